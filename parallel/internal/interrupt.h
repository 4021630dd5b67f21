// Interrupt handling for the duration of a run.
//
// While an InterruptScope lives, SIGINT, SIGTERM and SIGHUP are blocked in the
// calling thread and caught process-wide by a handler that only records the
// signal and writes a byte to a self-pipe (the ppoll way, as ninja does). The
// event loop unblocks them atomically inside ppoll and also polls wake_fd(), so
// it wakes whichever thread the kernel delivers the signal to. Destroying the
// last scope restores the caller's dispositions and every scope restores its
// thread's mask.
//
// Thread-safety: scopes may be created concurrently from several threads; the
// handlers are installed by the first and removed by the last.

#ifndef PARALLEL_INTERNAL_INTERRUPT_H_
#define PARALLEL_INTERNAL_INTERRUPT_H_

#include <signal.h>

#include "absl/status/status.h"

namespace parallel {
namespace internal {

class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

  // The mask to use inside ppoll: the caller's mask before the scope.
  const sigset_t* poll_mask() const { return &saved_mask_; }
  // Readable once one of the signals has arrived; -1 if the self-pipe could
  // not be created (then signals still interrupt ppoll in this thread).
  int wake_fd() const;
  // The first signal that arrived while any scope was alive, or 0.
  static int pending();

  // In a freshly forked child: forget the parent's scopes and handlers.
  // Async-signal-safe.
  static void ForgetInChild();

 private:
  sigset_t saved_mask_;
};

// Ends the process as `signo` says: restores the default disposition if the
// caller had none, unblocks `signo` and raises it. Returns only if the caller
// had installed a handler (which has then run).
void ReraiseSignal(int signo);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_INTERRUPT_H_
