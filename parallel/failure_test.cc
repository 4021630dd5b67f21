#include "parallel/failure.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parallel {
namespace {

using ::testing::HasSubstr;

TEST(BackgroundFailure, ListsEveryEntryWithItsTraceback) {
  BackgroundFailure failure(
      {{"std::runtime_error", "boom", "    @ 0x1  f()\n", "step 0"},
       {"absl::Status", "NOT_FOUND: x", "", "build"}});
  EXPECT_EQ(std::string(failure.what()),
            "step 0: std::runtime_error: boom\n    @ 0x1  f()\n"
            "build: absl::Status: NOT_FOUND: x\n");
  EXPECT_EQ(
      failure.ToSummaryString(),
      "step 0: std::runtime_error: boom\nbuild: absl::Status: NOT_FOUND: x\n");
}

TEST(BackgroundFailure, StepAndPidAreShownButNeverPartOfTheMessage) {
  ExceptionInfo info{"std::runtime_error", "boom", "", "step 0", 4242};
  BackgroundFailure failure({info});
  EXPECT_EQ(failure.exc_infos()[0].message, "boom");
  EXPECT_EQ(std::string(failure.what()),
            "step 0 (pid 4242): std::runtime_error: boom\n");
  EXPECT_EQ(failure.ToSummaryString(),
            "step 0 (pid 4242): std::runtime_error: boom\n");
}

TEST(BackgroundFailure, MatchesAndHasFailureTypes) {
  BackgroundFailure mixed({{"a", "", "", "s0"}, {"b", "", "", "s1"}});
  EXPECT_TRUE(mixed.HasFailureType("a"));
  EXPECT_TRUE(mixed.HasFailureType("b"));
  EXPECT_FALSE(mixed.HasFailureType("c"));
  EXPECT_FALSE(mixed.MatchesFailureType("a"));
  BackgroundFailure same({{"a", "", "", "s0"}, {"a", "", "", "s1"}});
  EXPECT_TRUE(same.MatchesFailureType("a"));
  BackgroundFailure none({});
  EXPECT_FALSE(none.MatchesFailureType("a"));
  EXPECT_FALSE(none.HasFailureType("a"));
}

TEST(BackgroundFailure, IsCatchableAsRuntimeError) {
  try {
    throw BackgroundFailure({{std::string(kProcessTimeout), "slow", "", "s"}});
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("parallel::ProcessTimeout: slow"));
  }
}

}  // namespace
}  // namespace parallel
