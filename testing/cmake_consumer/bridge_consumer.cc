// A gtest program outside this repository's builds that links the installed
// gtest bridge and names none of its symbols: the bridge must still be in
// the binary, and report the step's failure here, at this file's line.
#include "gtest/gtest.h"
#include "parallel/parallel.h"

TEST(Consumer, AFailureInAStepFailsThisTest) {
  try {
    parallel::RunParallelSteps({[] { EXPECT_EQ(1, 2) << "marker-consumer"; }});
  } catch (const parallel::BackgroundFailure&) {
    // Without the bridge this test would pass (with a warning).
  }
}
