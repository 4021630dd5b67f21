// A gtest binary for gtest_parallel_test.sh (tagged manual): tests that
// pass, fail, crash, hang, are flaky, disabled, parameterized and typed.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace {

// Appends a line per process start to the file named by $SAMPLE_STARTS, so
// that a test can count the processes gtest_parallel started.
const bool kStartCounted = [] {
  if (const char* path = std::getenv("SAMPLE_STARTS")) {
    std::ofstream(path, std::ios::app) << getpid() << "\n";
  }
  return true;
}();

TEST(Pass, One) { std::printf("output of Pass.One\n"); }
TEST(Pass, Two) { usleep(50000); }
TEST(Pass, DISABLED_Skipped) { std::printf("disabled test ran\n"); }
TEST(DISABLED_Off, Test) { std::printf("disabled suite ran\n"); }

TEST(Fail, Expect) {
  std::printf("before the failure\n");
  EXPECT_EQ(1, 2) << "marker-fail";
}
TEST(Crash, Abort) {
  std::printf("about to abort\n");
  std::fflush(stdout);
  std::abort();
}
TEST(Hang, Sleeps) { sleep(60); }

// Fails on its first run, passes after: the count lives in the file named
// by $FLAKY_COUNTER.
TEST(Flaky, PassesOnRetry) {
  const char* path = std::getenv("FLAKY_COUNTER");
  ASSERT_NE(path, nullptr);
  int runs = 0;
  std::ifstream(path) >> runs;
  std::ofstream(path) << runs + 1;
  EXPECT_GE(runs, 1) << "first run fails";
}

// Checks that gtest_parallel removed gtest's sharding and output variables.
TEST(Env, NoShardingVariables) {
  EXPECT_EQ(std::getenv("GTEST_SHARD_INDEX"), nullptr);
  EXPECT_EQ(std::getenv("GTEST_TOTAL_SHARDS"), nullptr);
  EXPECT_EQ(std::getenv("GTEST_OUTPUT"), nullptr);
}

class Param : public ::testing::TestWithParam<int> {};
TEST_P(Param, Even) { EXPECT_EQ(GetParam() % 2, 0); }
INSTANTIATE_TEST_SUITE_P(Numbers, Param, ::testing::Values(0, 2, 4));

template <typename T>
class Typed : public ::testing::Test {};
using Types = ::testing::Types<int, double>;
TYPED_TEST_SUITE(Typed, Types);
TYPED_TEST(Typed, DefaultIsZero) { EXPECT_EQ(TypeParam(), TypeParam(0)); }

}  // namespace
