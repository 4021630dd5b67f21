// parallel/process.h — Python multiprocessing's Process: one child running
// a closure, started and joined by hand.
//
//   parallel::Queue<int> results;
//   parallel::Process worker([&] { results.Put(Compute()); }, "worker");
//   worker.Start();
//   absl::StatusOr<int> first = results.Get(absl::Seconds(10));
//   worker.Join();
//   if (worker.exitcode() != 0) { ... }   // -N: killed by signal N
//
// Use it when a step's start-run-collect shape does not fit: a long-lived
// helper beside the steps, a producer feeding a Queue. For many closures
// that each return a result, RunParallelSteps or ProcessPoolExecutor says
// more (failures with tracebacks, timeouts, ordering).
//
// The child is forked with the library's hygiene: it leads its own process
// group, stdin is /dev/null, signals the caller caught are back at their
// defaults, and it gets SIGKILL if the thread that started it ends (Linux's
// parent-death signal: start a Process from a thread that outlives it). The
// child runs `target` and _exits: 0 when it returned, 1 when it threw
// (the exception's type and what() are written to its stderr, as Python
// prints the traceback). Everything left in its process group is killed
// when it is reaped, as for steps.
//
// Output: by default the child's stdout and stderr go to temp files (memfd)
// and are written to Options::output_fd / error_fd when Join() sees it end
// — grouped, as a step's output is. Options::capture_output = false lets the
// child write straight to the caller's descriptors instead (streaming).
//
// Destroying a Process that is still running kills its process group
// (SIGKILL) and reaps it; its captured output so far is still written out.
// A Process that ended and was never joined is reaped (and its output
// written) by the destructor too. Nothing outlives it.
//
// Thread-safety: thread-compatible (one thread at a time per Process).

#ifndef PARALLEL_PROCESS_H_
#define PARALLEL_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "parallel/internal/child.h"
#include "parallel/internal/fd.h"

namespace parallel {

class Process {
 public:
  struct Options {
    // Capture the child's output and write it out at Join() (true), or let
    // it write to the caller's descriptors directly (false).
    bool capture_output = true;
    int output_fd = 1;
    int error_fd = 2;
  };

  // `name` defaults to "Process-N" (N counts Processes made by this
  // process, from 1, as Python's).
  explicit Process(std::function<void()> target, std::string name = "");
  Process(std::function<void()> target, std::string name, Options options);
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  // Forks the child. Throws std::logic_error when called twice, and
  // std::system_error when the system cannot fork (out of processes or
  // memory).
  void Start();
  // Waits for the child to end, at most `timeout`; true once it has ended
  // (then it is reaped, its output written and exitcode() set). Returns true
  // at once when already joined; throws std::logic_error before Start().
  bool Join(absl::Duration timeout = absl::InfiniteDuration());
  // Started and not ended (an ended child that was not joined yet is not
  // alive).
  bool IsAlive() const;
  // SIGTERM (then SIGCONT, so a stopped child can act on it) to its process
  // group; Kill(): SIGKILL. No-ops before Start() and after Join().
  void Terminate();
  void Kill();
  // nullopt until the child has ended; then its exit code, or -N when
  // signal N killed it (Python's convention). Known as soon as it ended,
  // before Join().
  std::optional<int> exitcode() const;
  // 0 before Start().
  int pid() const { return pid_; }
  const std::string& name() const { return name_; }

 private:
  void WriteOutput();

  std::function<void()> target_;
  std::string name_;
  Options options_;
  internal::Child child_;
  internal::UniqueFd stdout_file_;
  internal::UniqueFd stderr_file_;
  pid_t pid_ = 0;
  bool started_ = false;
  std::optional<int> exitcode_;
};

}  // namespace parallel

#endif  // PARALLEL_PROCESS_H_
