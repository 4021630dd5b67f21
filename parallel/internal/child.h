// The OS boundary: a passive object per child process, and the two ways of
// starting one (fork for a closure, a vfork-style spawn for a command).
//
// A Child owns its pid and a pidfd; it does nothing on its own. The engine
// (engine.h) polls the pidfds, decides when to signal, and reaps. Destroying a
// Child that was not reaped kills its whole process group and reaps it, so no
// path leaves a zombie or a stray process behind.
//
// Thread-safety: thread-compatible.

#ifndef PARALLEL_INTERNAL_CHILD_H_
#define PARALLEL_INTERNAL_CHILD_H_

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/failure.h"
#include "parallel/internal/fd.h"

namespace parallel {
namespace internal {

class Child {
 public:
  Child() = default;
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  ~Child();

  pid_t pid() const { return pid_; }
  // Readable once the child has ended.
  int pidfd() const { return pidfd_.get(); }
  bool alive() const { return pid_ > 0; }

  // Sends `signo` to the child's process group (grandchildren too).
  void SignalGroup(int signo) const;
  // Sends `signo` to the child's main thread only.
  void SignalMainThread(int signo) const;
  // Blocks until the child has ended, kills whatever is left of its process
  // group, reaps it and returns its wait status.
  int Reap();

 private:
  pid_t pid_ = 0;
  UniqueFd pidfd_;
};

// Why the library ends a running step.
enum class KillReason { kNone, kTimeout, kSilentTimeout, kHalt, kInterrupt };

// "SIGSEGV" for 11, "signal 99" for a number without a name.
std::string SignalName(int signo);

// The failure of a process that ended without reporting a result: killed for
// a timeout (`kill`, with the stack it dumped), killed by a signal (with the
// crash stack it recorded), or exited. `who` names the step and its pid; a
// command's non-zero exit is its normal failure, a forked step's an
// unexpected one. error->step is left to the caller. Not for kHalt or
// kInterrupt, which are outcomes, not failures.
ExceptionInfo EndedWithoutResult(const std::string& who, int wait_status,
                                 KillReason kill, absl::Duration timeout,
                                 absl::Duration silent_timeout,
                                 const std::string& hang_trace,
                                 const std::string& crash_trace,
                                 bool is_command);

// After SIGTERM, how long a step's process group gets before SIGKILL.
inline constexpr absl::Duration kKillGrace = absl::Milliseconds(500);
// How long a hung step gets to dump its stack before SIGTERM.
inline constexpr absl::Duration kDumpGrace = absl::Milliseconds(250);

// How a step's process is ended: optionally ask its main thread for a stack
// dump (kDumpStackSignal), then SIGTERM to its process group, then SIGKILL
// after a grace period. Passive: the event loop calls Advance() when next()
// is due.
class KillSequence {
 public:
  bool started() const { return stage_ != Stage::kIdle; }
  // When Advance() should be called next; InfiniteFuture when nothing is due.
  absl::Time next() const { return next_; }
  void Start(const Child& child, bool dump_stack_first, absl::Time now);
  // Takes the next step if it is due.
  void Advance(const Child& child, absl::Time now);

 private:
  enum class Stage { kIdle, kDump, kTerm, kKill };
  void Terminate(const Child& child, absl::Time now);

  Stage stage_ = Stage::kIdle;
  absl::Time next_ = absl::InfiniteFuture();
};

// The descriptors a child gets as 0, 1 and 2, and where it writes its result
// records (fork only; -1 for commands). Not owned.
struct ChildIo {
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int result_fd = -1;
  // Signals whose disposition a forked child resets to SIG_DFL (those the
  // parent does not leave at default); null = all of them.
  const sigset_t* signals_to_reset = nullptr;
  // The library's own descriptors that a forked child closes (other steps'
  // capture and result files, pidfds, ...), so that no step can touch
  // another's output. The caller's descriptors are left alone.
  const std::vector<int>* fds_to_close = nullptr;
};

// The signals whose disposition is not SIG_DFL in this process now, plus
// SIGPIPE, SIGINT, SIGTERM and SIGHUP: what a child must reset.
sigset_t NonDefaultSignals();

// Forks a child that runs `body` and reports through io.result_fd (see
// record.h), then _exits. Everything the child needs is prepared before fork;
// until `body` runs it does only async-signal-safe work. When `keep_value` is
// false the value `body` returns is not sent back. ResourceExhaustedError when
// the system is out of processes or memory (try again later).
absl::StatusOr<Child> ForkChild(
    const std::function<absl::StatusOr<std::string>()>& body, const ChildIo& io,
    bool keep_value);

// The general form of ForkChild: the child runs `child_main` after the same
// preparation and _exits with what it returns (after flushing stdio).
absl::StatusOr<Child> ForkProcess(absl::FunctionRef<int()> child_main,
                                  const ChildIo& io);

// Appends a kFailure record: the step failed with this type and message.
void AppendFailureRecord(std::string type, std::string message,
                         std::string traceback, std::string* out);
// Appends the kFailure record of a step whose output could not be written.
void AppendOutputLostRecord(int error, std::string* out);

// Flushes std::cout, std::cerr, stdout and stderr; returns the errno of a
// failed write (ENOSPC, EFBIG, ...) or 0.
int FlushOutput();

// Runs `body`, flushes stdio, and appends one record to *record: kValue (its
// value, or "" when !keep_value), or kFailure (the exception or status, or
// parallel::OutputLost if stdio could not write). Returns 0 on kValue, else 1.
int RunBody(const std::function<absl::StatusOr<std::string>()>& body,
            bool keep_value, std::string* record);

// In a child: RunBody, then the record written to `result_fd`. Returns
// RunBody's code, or 126 if the record could not be written.
int RunBodyAndReport(const std::function<absl::StatusOr<std::string>()>& body,
                     int result_fd, bool keep_value);

// Starts argv (argv[0] searched in $PATH) without copying the caller's
// memory — clone(CLONE_VM | CLONE_VFORK) as glibc's posix_spawn does — in its
// own process group, with default signal dispositions, an empty signal mask
// and PR_SET_PDEATHSIG (which posix_spawn cannot set). NotFoundError if
// argv[0] cannot be executed; ResourceExhaustedError as for ForkChild.
absl::StatusOr<Child> SpawnChild(const std::vector<std::string>& argv,
                                 const ChildIo& io);

// For a forked child that will itself start children: forget the parent's
// process-wide state (interrupt handling). Async-signal-safe.
void ResetStateInChild();

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_CHILD_H_
