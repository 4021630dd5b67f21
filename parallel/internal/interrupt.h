// Interrupt handling while runs are in progress.
//
// While an InterruptScope lives, SIGINT, SIGTERM, SIGHUP and SIGQUIT — and
// SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU and SIGXFSZ while
// their disposition is the default, which would end the process and leave
// the children's process groups running — are caught process-wide by a
// handler that does one of two things:
//  - if some thread is inside an InterruptWait (an event loop about to poll,
//    or polling), it records the signal and writes a byte to a self-pipe that
//    the loop polls (the self-pipe trick: a signal that lands between the
//    loop's check and its poll still wakes it);
//  - otherwise nobody would act on it soon, so it behaves as the caller's
//    previous disposition would: calls the caller's handler, ignores it, or
//    restores the default and lets the signal end the process (children die
//    with it through PR_SET_PDEATHSIG).
// A signal ignored (SIG_IGN) when the first scope is created is not caught:
// it stays ignored, for the run and for its children (nohup, a background
// job's SIGINT, a caller's signal(SIGTERM, SIG_IGN)), as make, sh and GNU
// parallel leave it. Destroying the last scope restores the caller's
// dispositions.
//
// Thread-safety: scopes and waits may be created concurrently from several
// threads; the handlers are installed by the first scope, removed by the last.

#ifndef PARALLEL_INTERNAL_INTERRUPT_H_
#define PARALLEL_INTERNAL_INTERRUPT_H_

#include <signal.h>

namespace parallel {
namespace internal {

class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

  // Readable once one of the signals has arrived during a wait; -1 if the
  // self-pipe could not be created (then a signal still interrupts ppoll in
  // the thread that receives it).
  int wake_fd() const;
  // The first signal that arrived during a wait since the first live scope
  // was created, or 0.
  static int pending();

  // In a freshly forked child: forget the parent's scopes and handlers.
  // Async-signal-safe.
  static void ForgetInChild();
};

// Marks the calling thread as an event loop that will act on a pending
// signal: while any InterruptWait lives, signals are recorded, not forwarded.
class InterruptWait {
 public:
  InterruptWait();
  ~InterruptWait();
  InterruptWait(const InterruptWait&) = delete;
  InterruptWait& operator=(const InterruptWait&) = delete;

  // Whether the calling thread holds one already (then another adds
  // nothing). A read only: a loop that forks asks it every turn.
  static bool HeldByThisThread();
};

// Whether an InterruptScope may catch `signo` (see above).
bool MayBeCaught(int signo);

// Ends the process as `signo` says: raises it with the caller's disposition
// (restored by then). Returns only if that disposition is a handler, which
// has then run, or SIG_IGN.
void ReraiseSignal(int signo);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_INTERRUPT_H_
