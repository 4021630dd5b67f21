// parallel::testing::InProcessSteps — the in-process fake for your own unit
// tests (what chromite's ParallelMock was).
//
// While an InProcessSteps object lives, RunParallelSteps, RunSteps,
// BackgroundTaskRunner, RunTasksInProcessPool and ProcessPoolExecutor run
// closures one after another in the calling process (a runner's input
// inside its Put(), an executor's task inside its Submit(), on the calling
// thread): no fork, no capture (steps write straight to the process's
// stdout), so gMock expectations and fakes set inside steps are seen by the
// test, and a debugger or sanitizer follows every step.
// Failures are still gathered into BackgroundFailure exactly as in real runs;
// halt_on_error stops at the first failure; timeouts are not enforced.
// Command steps still run as real processes, one at a time.
//
//   TEST(Build, CompilesEveryTarget) {
//     parallel::testing::InProcessSteps in_process;
//     MockCompiler compiler;
//     EXPECT_CALL(compiler, Compile(_)).Times(3);
//     BuildAll(compiler);  // calls parallel::RunParallelSteps inside
//   }
//
// Thread-safety: process-wide; instances may nest.

#ifndef TESTING_IN_PROCESS_STEPS_H_
#define TESTING_IN_PROCESS_STEPS_H_

namespace parallel {
namespace testing {

class InProcessSteps {
 public:
  InProcessSteps();
  ~InProcessSteps();
  InProcessSteps(const InProcessSteps&) = delete;
  InProcessSteps& operator=(const InProcessSteps&) = delete;
};

}  // namespace testing
}  // namespace parallel

#endif  // TESTING_IN_PROCESS_STEPS_H_
