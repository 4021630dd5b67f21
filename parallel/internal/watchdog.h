// The watchdog: takes a run's process groups along when the run's own
// process dies abruptly (SIGKILL, the OOM killer, a CI timeout).
// PR_SET_PDEATHSIG reaches only the processes the library started directly;
// what they started (a shell's children, `std::system`, make's compilers)
// lives on in their process groups. So each supervisor forks one small
// watchdog process, in a session of its own, that holds the read end of a
// pipe: each child writes its own process group id there as it starts
// (WatchOwnGroup, before it can start any process of its own), and the
// supervisor a "forget" while the ended child is still an unreaped zombie —
// its group id cannot have been reused by then. (The supervisor wrote the
// id itself once, after the fork returned; a caller SIGKILLed in between
// left a command's children unwatched, alive, found by the tool's test.) The watchdog is
// woken only by the pipe's end and otherwise takes the waiting words every
// 50 ms, so a step costs it no context switch. When the pipe says EOF
// without a goodbye (the supervisor's process is gone), it reads every word
// still in the pipe, sends SIGKILL to every group it still knows, and
// exits. A supervisor that ends normally says goodbye and reaps it. The
// supervisor keeps a read end too, so a write never raises SIGPIPE.
//
//   absl::StatusOr<Watchdog> watchdog = Watchdog::Start();
//   setup.watch_fd = watchdog->watch_fd();  // launch.h: the child says it
//   watchdog->Forget(child.pid());   // pidfd readable, before waitpid
//
// Cost: one fork per run, one 4-byte write per child start and end.
// Thread-safety: thread-compatible.

#ifndef PARALLEL_INTERNAL_WATCHDOG_H_
#define PARALLEL_INTERNAL_WATCHDOG_H_

#include <sys/types.h>

#include <vector>

#include "absl/status/statusor.h"
#include "parallel/internal/fd.h"

namespace parallel {
namespace internal {

// In a child that leads its own process group, before it starts anything:
// has the watchdog behind `watch_fd` kill that group if the run's process
// dies. Waits at most about 250 ms for room in a full pipe (the watchdog
// takes its words every 50 ms), then goes on unwatched. Async-signal-safe.
void WatchOwnGroup(int watch_fd);

class Watchdog {
 public:
  // Forks the watchdog; it closes every other descriptor it inherited.
  static absl::StatusOr<Watchdog> Start();
  Watchdog() = default;
  Watchdog(Watchdog&& other) noexcept;
  Watchdog& operator=(Watchdog&& other) noexcept;
  // Says goodbye (the watchdog exits without killing) and reaps it.
  ~Watchdog();

  bool running() const { return write_end_.valid(); }
  // The descriptors a child must close.
  void AppendFds(std::vector<int>* fds) const;
  // Where a child registers its group (WatchOwnGroup); -1 if not running.
  int watch_fd() const { return write_end_.get(); }
  void Forget(pid_t group);

 private:
  void Send(int32_t word);
  void Stop();

  UniqueFd write_end_;
  UniqueFd read_end_;  // never read: only so that the pipe has a reader
  pid_t pid_ = 0;
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_WATCHDOG_H_
