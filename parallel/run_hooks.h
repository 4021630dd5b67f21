// parallel/run_hooks.h — optional observers and admission control for
// RunSteps, for tools built on it (the parallel_steps CLI uses all of them).
//
//   parallel::RunHooks hooks;
//   hooks.on_end = [](size_t i, const parallel::StepReport& r) { ... };
//   parallel::RunSteps(std::move(steps), options, hooks);
//
// Thread-safety: the callbacks run on the thread that called RunSteps.

#ifndef PARALLEL_RUN_HOOKS_H_
#define PARALLEL_RUN_HOOKS_H_

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "parallel/step.h"

namespace parallel {

// Extra admission control on top of max_parallel, such as the GNU make
// jobserver: the first running step needs no permission (make's implicit
// slot); every step started while others run needs TryAcquire() to succeed,
// and gives its permission back through Release() when a step ends.
class Throttle {
 public:
  virtual ~Throttle() = default;
  // Non-blocking: true if one more step may start now.
  virtual bool TryAcquire() = 0;
  // One permission back. Called exactly once per successful TryAcquire(),
  // on every path (failure, halt, interrupt included).
  virtual void Release() = 0;
  // Becomes readable when TryAcquire() may succeed again; -1 if none.
  virtual int wake_fd() const = 0;
};

// Optional observers and knobs for tools built on RunSteps. Callbacks run on
// the calling thread, inside the run's event loop; they must not block. If a
// callback (or the throttle) throws, the run is abandoned: every step's
// process group is killed and reaped, the throttle gets back every
// permission it gave, and the exception propagates out of RunSteps.
struct RunHooks {
  Throttle* throttle = nullptr;  // not owned
  // A step's process started / a step ended (its report is final).
  std::function<void(size_t index)> on_start;
  std::function<void(size_t index, const StepReport& report)> on_end;
  // A running step's process was found stopped (`stopped`: SIGSTOP, SIGTSTP,
  // a terminal stop) or running again. Looked for about once a second, and
  // only while this is set. A stopped step with no timeout set waits until
  // someone continues or kills it, as under make.
  std::function<void(size_t index, bool stopped)> on_stopped;
  // Asked after each step's end (after on_end) whether to stop the run, as
  // GNU parallel's --halt: kSoon starts no more steps and lets the running
  // ones finish; kNow also kills them (as halt_on_error, whose halted steps'
  // output is dropped). Steps never started end as kHalted.
  enum class Halt { kNo, kSoon, kNow };
  std::function<Halt(size_t index, const StepReport& report)> should_halt;
  // A terminal (e.g. open("/dev/tty")), not owned: each step gets it as
  // stdin, and its process group is the terminal's foreground group while
  // it runs, so that it may read and prompt (GNU parallel's --tty; a step
  // that reads the terminal otherwise stops on SIGTTIN). The caller's group
  // gets the foreground back after each step. Needs max_parallel == 1
  // (else kInvalidArgument).
  int terminal_fd = -1;
  // Called before replayed bytes are written (e.g. to erase a status line).
  std::function<void()> before_output;
  // Prefix every replayed line with "<step name>\t" (GNU parallel's --tag).
  // Output is then copied through a buffer rather than by the kernel.
  bool tag_lines = false;
  // With tag_lines: step i's prefix is line_tags[i] instead of its name
  // (GNU parallel tags with a job's arguments). Steps beyond its end use
  // their names.
  std::vector<std::string> line_tags;
  // GNU parallel's --line-buffer: instead of each step's output whole and
  // in step order, every running step's complete lines are written as they
  // arrive (tagged with tag_lines), so lines of different steps interleave
  // but never mix. A line longer than 64 KiB goes out in 64 KiB pieces; a
  // step's unterminated last line goes out when the step ends. Liveness
  // over grouping: use it when watching a long run matters more than
  // reading each step's output in one piece. With halt_on_error (or
  // Halt::kNow), lines a halted step wrote before it was killed have
  // already been written.
  bool line_buffer = false;
  // GNU parallel's --results: called as step `index` is about to start;
  // returns an existing directory in which to keep a copy of its output
  // (files "stdout" and "stderr", or "stdout" alone with combine_stderr,
  // created or truncated), written as the output arrives whatever the
  // step's outcome — or "" for none. A file that cannot be created fails
  // the step before it starts (parallel::ProcessStartError naming the
  // file); one that cannot be written fails it as parallel::OutputLost. The
  // replay is unchanged.
  std::function<std::string(size_t index)> results_dir;
  // Asked as each step ends, before its output is replayed (its report is
  // final): false discards the output (GNU parallel's --retries shows only
  // a command's last attempt). Setting it makes no step live: each step's
  // output goes out whole once the step ended, still in step order. With
  // line_buffer, only what is not out yet is discarded.
  std::function<bool(size_t index, const StepReport& report)> replay_output;
};

}  // namespace parallel

#endif  // PARALLEL_RUN_HOOKS_H_
