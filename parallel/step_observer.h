// Hooks for test-framework bridges (//testing:gtest_bridge is one): code that
// runs around every step body wherever the body runs, and that receives in
// the calling process what a body sent from its child.
//
//   class Bridge : public parallel::StepObserver { ... };
//   Bridge bridge;  // lives as long as the process
//   const bool registered = (parallel::AddStepObserver(&bridge), true);
//
// A body runs in a forked child (RunParallelSteps, RunSteps), in a pool
// worker (BackgroundTaskRunner, RunTasksInProcessPool), or in the calling
// process under the in-process fake (testing/in_process_steps.h). Each body
// may send notes to the caller (SendNoteToCaller); a note is written to the
// step's result channel at once, so it arrives even if the child crashes
// right after. When the step has ended, the caller hands every note to every
// observer's OnNote: a step's notes in the order sent, steps in the order
// they end.
//
// Without any observer that says it handles GoogleTest, the library still
// notices, in a child, a GoogleTest test that goes from passing to failing
// while a body runs (gtest linked, //testing:gtest_bridge not): that step
// fails with type testing::TestPartResult and a message saying to link the
// bridge, and its output says so — a test never passes silently.
//
// Thread-safety: register observers before the first run (a static
// initializer does). BeforeBody/AfterBody run on the thread that runs the
// body; OnNote on the thread that runs the run's event loop: the caller's
// for RunParallelSteps and RunSteps, the runner's or executor's own thread
// for the task runners and ProcessPoolExecutor.
// SendNoteToCaller may be called from any thread of the child.

#ifndef PARALLEL_STEP_OBSERVER_H_
#define PARALLEL_STEP_OBSERVER_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "parallel/failure.h"

namespace parallel {

class StepObserver {
 public:
  virtual ~StepObserver() = default;

  // Whether this observer reports GoogleTest failures itself (the built-in
  // fallback described above then stays off).
  virtual bool handles_gtest() const { return false; }
  // Just before a body runs. `in_child`: in a forked child or a worker;
  // false under the in-process fake.
  virtual void BeforeBody(bool in_child) { (void)in_child; }
  // Just after the body returned or threw, on the same thread: a failure
  // for a body that otherwise succeeded (type and message; the step and pid
  // are filled in), or nullopt. A body that threw keeps its own failure.
  virtual std::optional<ExceptionInfo> AfterBody(bool in_child) {
    (void)in_child;
    return std::nullopt;
  }
  // In the calling process, once the step has ended: one note its body
  // sent. `step` names the step or input, `pid` the process it ran in.
  // Must not throw.
  virtual void OnNote(const std::string& step, int pid,
                      absl::string_view note) {
    (void)step, (void)pid, (void)note;
  }
};

// Registers `observer` (not owned; it must outlive every run) for every run
// of this process.
void AddStepObserver(StepObserver* observer);

// From a body running in a child: sends `note` to the calling process now.
// False when the body does not run in a child (the in-process fake, or no
// body at all) or the channel failed; nothing is sent then.
bool SendNoteToCaller(absl::string_view note);

}  // namespace parallel

#endif  // PARALLEL_STEP_OBSERVER_H_
