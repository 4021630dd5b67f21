#include "parallel/internal/judge.h"

#include <signal.h>

#include "gtest/gtest.h"

namespace parallel {
namespace internal {
namespace {

JudgeInput Input(ProcessExit exit, const ChildResult* result) {
  JudgeInput in;
  in.who = "step 0 (pid 7)";
  in.exit = exit;
  in.result = result;
  in.timeout = absl::Seconds(3);
  in.silent_timeout = absl::Seconds(4);
  return in;
}

TEST(Judge, ClosureSucceedsOnlyWithItsSuccessRecord) {
  ChildResult with_value;
  with_value.value = "v";
  EXPECT_EQ(Judge(Input(ProcessExit::Exited(0), &with_value)).outcome,
            StepOutcome::kSucceeded);
  EXPECT_EQ(Judge(Input(ProcessExit::Exited(0), &with_value)).value, "v");
  // The status was stolen, but the record says it succeeded.
  EXPECT_EQ(Judge(Input(ProcessExit::Lost(), &with_value)).outcome,
            StepOutcome::kSucceeded);
  // No record: never a pass, whatever the exit code.
  ChildResult nothing;
  const Verdict lost = Judge(Input(ProcessExit::Exited(0), &nothing));
  EXPECT_EQ(lost.outcome, StepOutcome::kFailed);
  EXPECT_EQ(lost.error->message,
            "step 0 (pid 7) exited unexpectedly with code 0");
  EXPECT_EQ(Judge(Input(ProcessExit::Lost(), &nothing)).outcome,
            StepOutcome::kFailed);
}

TEST(Judge, CommandNeedsExitCodeZeroAndALostStatusFails) {
  EXPECT_EQ(Judge(Input(ProcessExit::Exited(0), nullptr)).outcome,
            StepOutcome::kSucceeded);
  const Verdict three = Judge(Input(ProcessExit::Exited(3), nullptr));
  EXPECT_EQ(three.error->type, kProcessUnexpectedExit);
  EXPECT_EQ(three.error->message, "step 0 (pid 7) exited with code 3");
  const Verdict lost = Judge(Input(ProcessExit::Lost(), nullptr));
  EXPECT_EQ(lost.outcome, StepOutcome::kFailed);
  EXPECT_NE(lost.error->message.find("exit status lost"), std::string::npos);
}

TEST(Judge, TheStepsOwnFailureIsKeptVerbatim) {
  ChildResult threw;
  threw.failure = ExceptionInfo{"std::runtime_error", "boom", "tb", "", 0};
  const Verdict verdict = Judge(Input(ProcessExit::Exited(1), &threw));
  EXPECT_EQ(verdict.error->type, "std::runtime_error");
  EXPECT_EQ(verdict.error->message, "boom");
  EXPECT_EQ(verdict.error->traceback, "tb");
}

TEST(Judge, KillReasonsBecomeOutcomes) {
  ChildResult hung;
  hung.hang_trace = "stack";
  JudgeInput in = Input(ProcessExit::Killed(SIGTERM), &hung);
  in.why = KillReason::kTimeout;
  Verdict verdict = Judge(in);
  EXPECT_EQ(verdict.error->type, kProcessTimeout);
  EXPECT_EQ(verdict.error->message, "step 0 (pid 7) timed out after 3s");
  EXPECT_EQ(verdict.error->traceback, "stack");
  in.why = KillReason::kSilentTimeout;
  EXPECT_EQ(Judge(in).error->message, "step 0 (pid 7) had no output for 4s");
  in.stop_signal = SIGTSTP;
  EXPECT_EQ(Judge(in).error->message,
            "step 0 (pid 7) had no output for 4s (it was stopped by SIGTSTP)");
  in.stop_signal = -1;
  in.why = KillReason::kHalt;
  EXPECT_EQ(Judge(in).outcome, StepOutcome::kHalted);
  in.why = KillReason::kInterrupt;
  EXPECT_EQ(Judge(in).outcome, StepOutcome::kInterrupted);
}

TEST(Judge, CrashCarriesItsStackAndCaptureErrorsFailAPass) {
  ChildResult crashed;
  crashed.crash_trace = "frames";
  const Verdict verdict =
      Judge(Input(ProcessExit::Killed(SIGSEGV, true), &crashed));
  EXPECT_EQ(verdict.error->message,
            "step 0 (pid 7) was killed by signal 11 (SIGSEGV), core dumped");
  EXPECT_EQ(verdict.error->traceback, "frames");
  JudgeInput in = Input(ProcessExit::Exited(0), nullptr);
  in.capture_error = ENOSPC;
  EXPECT_EQ(Judge(in).error->type, kOutputLost);
}

}  // namespace
}  // namespace internal
}  // namespace parallel
