// The OS boundary, active half: the two ways of starting a child — fork for a
// closure, a vfork-style spawn for a command — and the one child-side
// preparation both run before the child's own code.
//
//   ChildSetup setup;
//   setup.stdout_fd = pipe_write_end;   // becomes the child's fd 1
//   absl::StatusOr<Child> child = SpawnChild({"make", "-C", "docs"}, setup);
//
// Every child leads its own process group, gets stdin from `stdin_fd`,
// default dispositions for the signals in `signals_to_reset`, an empty signal
// mask, PR_SET_PDEATHSIG(SIGKILL) (then a getppid() re-check), and closes
// the library's own descriptors listed in `fds_to_close`. Each of those calls
// is checked: a failure is reported to the parent (a kStartFailed record for a
// fork, an error Status for a spawn), never ignored.
//
// Thread-safety: thread-compatible; ChildSetup is read, not written.

#ifndef PARALLEL_INTERNAL_LAUNCH_H_
#define PARALLEL_INTERNAL_LAUNCH_H_

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "parallel/internal/child.h"

namespace parallel {
namespace internal {

// What a child gets, prepared entirely before fork. Descriptors are not
// owned; -1 leaves the child's descriptor as inherited.
struct ChildSetup {
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // Where a forked child reports (record.h); kept open in the child.
  int result_fd = -1;
  // Signals whose disposition the child resets to SIG_DFL (those the parent
  // does not leave at default); null = all of them.
  const sigset_t* signals_to_reset = nullptr;
  // The library's own descriptors (other steps' pipes, spill files, pidfds,
  // the replay targets...), closed in the child so that no step can write
  // past the ordering. The caller's descriptors are left alone. Only this
  // run's are listed: those of another run alive in the same process (a
  // task runner during RunParallelSteps) are close-on-exec, so commands never
  // see them, but a forked closure holds them until it ends.
  const std::vector<int>* fds_to_close = nullptr;
  // "NAME=value" entries a spawned command gets on top of (replacing the
  // same names in) the caller's environment; null: none. Forked children
  // ignore it.
  const std::vector<std::string>* extra_env = nullptr;
  // The run's watchdog (watchdog.h; -1: none): the child registers its new
  // process group there itself, after PR_SET_PDEATHSIG and before it can
  // start a process, so the caller's death at any moment leaves nothing of
  // the group behind.
  int watch_fd = -1;
  // A terminal whose foreground process group the child's new group becomes
  // (tcsetpgrp, before exec: the child never stops on SIGTTIN); -1: none.
  int foreground_tty_fd = -1;
};

// Gives the terminal's foreground back to this process's group (SIGTTOU
// blocked meanwhile, as a background process must).
void TakeTerminalBack(int tty_fd);

// What a child must reset to SIG_DFL: the signals whose disposition is not
// SIG_DFL in this process now, those an interrupt scope may catch
// (interrupt.h), SIGPIPE and SIGCHLD — but not a signal ignored now (other
// than SIGPIPE and SIGCHLD): that one the child inherits ignored.
sigset_t NonDefaultSignals();

// Flushes std::cout and std::cerr, except while one still has the stream
// buffer it had when the program started and that buffer is synchronised
// with stdio (the default): such a buffer holds no bytes of its own, so
// fflush(stdout) / fflush(stderr), which the caller does next, is its flush.
// Skipping the C++ flush spares a forked child the libstdc++ code and data
// pages it would otherwise touch (every page a young child touches costs it
// a fault). Flushes whatever replaced them (sync_with_stdio(false), a
// rdbuf() of the step's own).
void FlushCppStreams();

// Forks a child that runs `child_main` after the preparation and _exits with
// what it returns (after flushing stdio). ResourceExhaustedError when the
// system is out of processes or memory (try again later).
absl::StatusOr<Child> ForkProcess(absl::FunctionRef<int()> child_main,
                                  const ChildSetup& setup);

// Starts argv (argv[0] searched in $PATH) without copying the caller's memory
// — clone(CLONE_VM | CLONE_VFORK) as glibc's posix_spawn does — with the same
// preparation (posix_spawn itself cannot set PR_SET_PDEATHSIG).
// ResourceExhaustedError as for ForkProcess;
// InternalError naming the call if the preparation failed. A program that
// cannot be run is reported as a shell would: NotFoundError
// "<name>: command not found" (or "No such file or directory" for a path;
// a shell's exit code 127), PermissionDeniedError "<name>: Permission
// denied" / "Is a directory" / "Exec format error" (126).
absl::StatusOr<Child> SpawnChild(const std::vector<std::string>& argv,
                                 const ChildSetup& setup);

// For a forked child that will itself start children: forget the parent's
// process-wide state (interrupt handling). Async-signal-safe.
void ResetStateInChild();

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_LAUNCH_H_
