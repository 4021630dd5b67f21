// A gtest binary WITHOUT //testing:gtest_bridge, run by
// gtest_bridge_test.sh (tagged manual): a failed assertion inside a step
// must still fail the test, through the library's fallback.

#include "gtest/gtest.h"
#include "parallel/parallel.h"

namespace {

TEST(NoBridge, ExpectInAStepStillFailsTheTest) {
  // Not caught: the step failed, so RunParallelSteps throws.
  parallel::RunParallelSteps({[] { EXPECT_EQ(1, 2) << "marker-no-bridge"; }});
}

TEST(NoBridge, PassingStepsPass) {
  parallel::RunParallelSteps({[] { EXPECT_EQ(1, 1); }});
}

}  // namespace
