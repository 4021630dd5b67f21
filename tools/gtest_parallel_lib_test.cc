#include "tools/gtest_parallel_lib.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tools {
namespace gtest {
namespace {

using ::testing::ElementsAre;

TEST(ParseTestList, PlainTypedAndParameterizedTests) {
  const char* listing =
      "Pass.\n"
      "  One\n"
      "  DISABLED_Skipped\n"
      "Typed/0.  # TypeParam = int\n"
      "  DefaultIsZero\n"
      "Numbers/Param.\n"
      "  Even/0  # GetParam() = 0\n"
      "  Even/1  # GetParam() = 2\n";
  EXPECT_THAT(ParseTestList(listing),
              ElementsAre("Pass.One", "Pass.DISABLED_Skipped",
                          "Typed/0.DefaultIsZero", "Numbers/Param.Even/0",
                          "Numbers/Param.Even/1"));
}

TEST(ParseTestList, IgnoresWhatIsNotAList) {
  EXPECT_THAT(ParseTestList("Running main() from gtest_main.cc\n  stray\n"),
              ElementsAre());
}

TEST(SplitBatchOutput, EachTestGetsItsOwnLinesAndEnd) {
  const char* output =
      "Running main()\n"
      "[ RUN      ] A.One\n"
      "one says hi\n"
      "[       OK ] A.One (12 ms)\n"
      "[ RUN      ] A.Two\n"
      "a.cc:3: Failure\n"
      "[  FAILED  ] A.Two (5 ms)\n"
      "[ RUN      ] A.Three\n"
      "about to crash\n";
  const std::vector<BatchResult> results =
      SplitBatchOutput(output, {"A.One", "A.Two", "A.Three", "A.Four"});
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].state, BatchResult::kPassed);
  EXPECT_EQ(results[0].duration, absl::Milliseconds(12));
  EXPECT_EQ(results[0].output,
            "[ RUN      ] A.One\none says hi\n[       OK ] A.One (12 ms)\n");
  EXPECT_EQ(results[1].state, BatchResult::kFailed);
  EXPECT_EQ(results[2].state, BatchResult::kUnfinished);
  EXPECT_EQ(results[2].output, "[ RUN      ] A.Three\nabout to crash\n\n");
  EXPECT_EQ(results[3].state, BatchResult::kNotStarted);
}

TEST(SplitBatchOutput, APrintedMarkerOfAnotherTestDoesNotEndIt) {
  const std::vector<BatchResult> results = SplitBatchOutput(
      "[ RUN      ] A.One\n[       OK ] A.Other (1 ms)\n", {"A.One"});
  EXPECT_EQ(results[0].state, BatchResult::kUnfinished);
}

}  // namespace
}  // namespace gtest
}  // namespace tools
