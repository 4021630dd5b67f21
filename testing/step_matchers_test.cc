#include "testing/step_matchers.h"

#include <stdexcept>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/parallel.h"

namespace parallel {
namespace testing {
namespace {

using ::testing::DescribeMatcher;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StringMatchResultListener;

template <typename M, typename T>
std::string Explain(const M& matcher, const T& value) {
  StringMatchResultListener listener;
  ::testing::Matcher<const T&>(matcher).MatchAndExplain(value, &listener);
  return listener.str();
}

StepReport Failed(std::string type, std::string message) {
  StepReport step;
  step.name = "step 1";
  step.outcome = StepOutcome::kFailed;
  step.error = ExceptionInfo{std::move(type), std::move(message), "", "step 1", 7};
  return step;
}

TEST(StepMatchers, StepReports) {
  StepReport ok;
  ok.name = "step 0";
  ok.outcome = StepOutcome::kSucceeded;
  const StepReport bad = Failed("std::runtime_error", "disk full");
  EXPECT_THAT(ok, StepSucceeded());
  EXPECT_THAT(bad, Not(StepSucceeded()));
  EXPECT_THAT(bad, FailedWith("std::runtime_error"));
  EXPECT_THAT(bad, FailedWith("std::runtime_error", HasSubstr("disk")));
  EXPECT_THAT(bad, Not(FailedWith("std::runtime_error", HasSubstr("cpu"))));
  EXPECT_THAT(bad, Not(FailedWith("std::logic_error")));
  EXPECT_THAT(ok, Not(FailedWith("std::runtime_error")));
  EXPECT_EQ(Explain(StepSucceeded(), bad),
            "step 1 failed with std::runtime_error: disk full");
  StepReport halted;
  halted.name = "step 2";
  halted.outcome = StepOutcome::kHalted;
  EXPECT_EQ(Explain(FailedWith("x"), halted), "step 2 was halted");
  EXPECT_EQ(DescribeMatcher<StepReport>(FailedWith("x", HasSubstr("y"))),
            "is a step that failed: is a failure of type x, in a step that "
            "is anything, with a message that has substring \"y\"");
}

TEST(StepMatchers, BackgroundFailures) {
  const BackgroundFailure failure(
      {ExceptionInfo{"std::runtime_error", "boom", "", "step 0", 5},
       ExceptionInfo{std::string(kProcessTimeout), "step 3 (pid 9) timed out",
                     "", "step 3", 9}});
  EXPECT_THAT(failure, HasFailureOfType("std::runtime_error"));
  EXPECT_THAT(failure, ContainsFailure(std::string(kProcessTimeout), "step 3"));
  EXPECT_THAT(failure, Not(ContainsFailure("std::runtime_error", "step 3")));
  EXPECT_THAT(failure,
              ContainsFailure("std::runtime_error", "step 0", "boom"));
  EXPECT_THAT(failure, Not(HasFailureOfType("testing::TestPartResult")));
  EXPECT_EQ(Explain(HasFailureOfType("x"), failure),
            "has failures:\n  step 0: std::runtime_error: boom\n  step 3: "
            "parallel::ProcessTimeout: step 3 (pid 9) timed out");
}

TEST(StepMatchers, OnARealRun) {
  absl::StatusOr<RunReport> report = RunSteps(
      {Step::Function([]() -> absl::StatusOr<std::string> { return ""; }),
       Step::Function([]() -> absl::StatusOr<std::string> {
         throw std::invalid_argument("bad flag");
       })});
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(report->steps[0], StepSucceeded());
  EXPECT_THAT(report->steps[1],
              FailedWith("std::invalid_argument", "bad flag"));
}

}  // namespace
}  // namespace testing
}  // namespace parallel
