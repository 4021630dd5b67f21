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

Task Timed(const std::string& binary, const std::string& test,
           std::optional<double> seconds, int repetition = 1) {
  return Task{binary, test, repetition, seconds, {}};
}

TEST(MakeBatches, AutoDealsLongestFirstToTheLeastLoadedBatch) {
  // Sorted as FindTasks sorts them: longest first.
  const std::vector<Task> tasks = {
      Timed("b", "A.Slow", 4.0), Timed("b", "A.Mid", 3.0),
      Timed("b", "A.Mid2", 2.0), Timed("b", "A.Quick", 1.0),
      Timed("b", "A.Q2", 1.0),   Timed("b", "A.Q3", 1.0),
      Timed("b", "A.Q4", 1.0),   Timed("b", "A.Q5", 1.0)};
  const std::vector<size_t> all = {0, 1, 2, 3, 4, 5, 6, 7};
  // Two workers: two batches of at most 4, loads 4+1+1+1 = 7 and
  // 3+2+1+1 = 7 (a tie goes to the first).
  EXPECT_THAT(MakeBatches(tasks, all, Options::kAutoBatch, 2),
              ElementsAre(ElementsAre(0, 3, 4, 6), ElementsAre(1, 2, 5, 7)));
  // Four workers: four batches of at most 2 (loads 5, 4, 3 and 2: a full
  // batch takes no more), the longest first.
  EXPECT_THAT(MakeBatches(tasks, all, Options::kAutoBatch, 4),
              ElementsAre(ElementsAre(0, 7), ElementsAre(1, 6),
                          ElementsAre(2, 5), ElementsAre(3, 4)));
}

TEST(MakeBatches, NeverMixesBinariesOrRepetitions) {
  const std::vector<Task> tasks = {
      Timed("b1", "A.X", std::nullopt), Timed("b2", "A.X", std::nullopt),
      Timed("b1", "A.X", std::nullopt, 2), Timed("b1", "A.Y", std::nullopt)};
  EXPECT_THAT(MakeBatches(tasks, {0, 1, 2, 3}, Options::kAutoBatch, 2),
              ::testing::UnorderedElementsAre(ElementsAre(0, 3), ElementsAre(1),
                                              ElementsAre(2)));
}

TEST(MakeBatches, AFixedSizeIsAnUpperBound) {
  std::vector<Task> tasks;
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(Timed("b", "A.T" + std::to_string(i), std::nullopt));
  }
  EXPECT_THAT(MakeBatches(tasks, {0, 1, 2, 3, 4}, 1, 2),
              ElementsAre(ElementsAre(0), ElementsAre(1), ElementsAre(2),
                          ElementsAre(3), ElementsAre(4)));
  EXPECT_THAT(MakeBatches(tasks, {4, 2, 0}, 2, 8),
              ElementsAre(ElementsAre(4, 0), ElementsAre(2)));
}

}  // namespace
}  // namespace gtest
}  // namespace tools
