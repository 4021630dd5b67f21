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

}  // namespace
}  // namespace gtest
}  // namespace tools
