// gMock matchers for what runs report: a StepReport, an ExceptionInfo, a
// BackgroundFailure.
//
//   EXPECT_THAT(report.steps[1], StepSucceeded());
//   EXPECT_THAT(report.steps[2], FailedWith("std::runtime_error",
//                                           HasSubstr("disk full")));
//   EXPECT_THAT(failure, ContainsFailure(parallel::kProcessTimeout, "step 3"));
// (Not HasFailure: inside a TEST that name is gtest's Test::HasFailure().)
//   try { RunParallelSteps(...); } catch (const BackgroundFailure& e) {
//     EXPECT_THAT(e, HasFailureOfType("testing::TestPartResult"));
//   }
//
// Each explains a mismatch with what the step did instead ("failed with
// std::logic_error: boom", "was halted", "has failures: step 0: ...").
//
// Thread-safety: as gMock matchers.

#ifndef TESTING_STEP_MATCHERS_H_
#define TESTING_STEP_MATCHERS_H_

#include <optional>
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "parallel/failure.h"
#include "parallel/step.h"

namespace parallel {
namespace testing {

namespace step_matchers_internal {

inline std::string OutcomeWord(StepOutcome outcome) {
  switch (outcome) {
    case StepOutcome::kSucceeded:
      return "succeeded";
    case StepOutcome::kFailed:
      return "failed";
    case StepOutcome::kHalted:
      return "was halted";
    case StepOutcome::kInterrupted:
      return "was interrupted";
  }
  return "ended in an unknown way";
}

inline std::string Describe(const ExceptionInfo& info) {
  return absl::StrCat(info.step.empty() ? "" : info.step + ": ", info.type,
                      ": ", info.message);
}

inline std::string Describe(const StepReport& step) {
  std::string text = absl::StrCat(step.name, " ", OutcomeWord(step.outcome));
  if (step.error) absl::StrAppend(&text, " with ", step.error->type, ": ",
                                  step.error->message);
  return text;
}

// Matches an ExceptionInfo by type, step and message.
class ExceptionInfoMatcher {
 public:
  using is_gtest_matcher = void;
  ExceptionInfoMatcher(std::string type, ::testing::Matcher<std::string> step,
                       ::testing::Matcher<std::string> message)
      : type_(std::move(type)),
        step_(std::move(step)),
        message_(std::move(message)) {}

  bool MatchAndExplain(const ExceptionInfo& info,
                       ::testing::MatchResultListener* listener) const {
    if (info.type != type_) {
      *listener << "its type is " << info.type;
      return false;
    }
    ::testing::StringMatchResultListener inner;
    if (!step_.MatchAndExplain(info.step, &inner)) {
      *listener << "its step is \"" << info.step << "\"";
      return false;
    }
    if (!message_.MatchAndExplain(info.message, &inner)) {
      *listener << "its message is \"" << info.message << "\"";
      return false;
    }
    return true;
  }
  void DescribeTo(std::ostream* os) const {
    *os << "is a failure of type " << type_ << ", in a step that ";
    step_.DescribeTo(os);
    *os << ", with a message that ";
    message_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "is not ";
    DescribeTo(os);
  }

 private:
  std::string type_;
  ::testing::Matcher<std::string> step_;
  ::testing::Matcher<std::string> message_;
};

class StepReportMatcher {
 public:
  using is_gtest_matcher = void;
  // No failure matcher: the step must have succeeded.
  explicit StepReportMatcher(std::optional<ExceptionInfoMatcher> failure)
      : failure_(std::move(failure)) {}

  bool MatchAndExplain(const StepReport& step,
                       ::testing::MatchResultListener* listener) const {
    if (!failure_) {
      if (step.outcome == StepOutcome::kSucceeded) return true;
      *listener << Describe(step);
      return false;
    }
    if (step.outcome != StepOutcome::kFailed || !step.error) {
      *listener << Describe(step);
      return false;
    }
    ::testing::StringMatchResultListener inner;
    if (failure_->MatchAndExplain(*step.error, &inner)) return true;
    *listener << Describe(step);
    return false;
  }
  void DescribeTo(std::ostream* os) const {
    if (!failure_) {
      *os << "is a step that succeeded";
      return;
    }
    *os << "is a step that failed: ";
    failure_->DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "not (";
    DescribeTo(os);
    *os << ")";
  }

 private:
  std::optional<ExceptionInfoMatcher> failure_;
};

class BackgroundFailureMatcher {
 public:
  using is_gtest_matcher = void;
  explicit BackgroundFailureMatcher(ExceptionInfoMatcher each)
      : each_(std::move(each)) {}

  bool MatchAndExplain(const BackgroundFailure& failure,
                       ::testing::MatchResultListener* listener) const {
    ::testing::StringMatchResultListener inner;
    for (const ExceptionInfo& info : failure.exc_infos()) {
      if (each_.MatchAndExplain(info, &inner)) return true;
    }
    *listener << "has failures:";
    for (const ExceptionInfo& info : failure.exc_infos()) {
      *listener << "\n  " << Describe(info);
    }
    return false;
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has a failure that ";
    each_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "has no failure that ";
    each_.DescribeTo(os);
  }

 private:
  ExceptionInfoMatcher each_;
};

}  // namespace step_matchers_internal

// An ExceptionInfo of this type, step and message.
inline step_matchers_internal::ExceptionInfoMatcher FailureIs(
    absl::string_view type,
    ::testing::Matcher<std::string> step = ::testing::A<std::string>(),
    ::testing::Matcher<std::string> message = ::testing::A<std::string>()) {
  return step_matchers_internal::ExceptionInfoMatcher(
      std::string(type), std::move(step), std::move(message));
}

// A StepReport that succeeded.
inline step_matchers_internal::StepReportMatcher StepSucceeded() {
  return step_matchers_internal::StepReportMatcher(std::nullopt);
}

// A StepReport that failed with this type (and a message matching).
inline step_matchers_internal::StepReportMatcher FailedWith(
    absl::string_view type,
    ::testing::Matcher<std::string> message = ::testing::A<std::string>()) {
  return step_matchers_internal::StepReportMatcher(
      FailureIs(type, ::testing::A<std::string>(),
                std::move(message)));
}

// A BackgroundFailure with at least one failure of this type (in a step
// matching, with a message matching).
inline step_matchers_internal::BackgroundFailureMatcher ContainsFailure(
    absl::string_view type,
    ::testing::Matcher<std::string> step = ::testing::A<std::string>(),
    ::testing::Matcher<std::string> message = ::testing::A<std::string>()) {
  return step_matchers_internal::BackgroundFailureMatcher(
      FailureIs(type, std::move(step), std::move(message)));
}

// A BackgroundFailure with a failure of this type.
inline step_matchers_internal::BackgroundFailureMatcher HasFailureOfType(
    absl::string_view type) {
  return ContainsFailure(type);
}

}  // namespace testing
}  // namespace parallel

#endif  // TESTING_STEP_MATCHERS_H_
