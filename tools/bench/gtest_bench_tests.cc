// The gtest binary of tools/bench/gtest_parallel_vs_peer.sh: 2,000 trivial
// tests (Trivial/*) and 200 tests of 10 ms each (Sleepy/*).

#include <unistd.h>

#include "gtest/gtest.h"

namespace {

class Trivial : public ::testing::TestWithParam<int> {};
TEST_P(Trivial, Passes) { EXPECT_GE(GetParam(), 0); }
INSTANTIATE_TEST_SUITE_P(Many, Trivial, ::testing::Range(0, 2000));

class Sleepy : public ::testing::TestWithParam<int> {};
TEST_P(Sleepy, TenMilliseconds) { usleep(10000); }
INSTANTIATE_TEST_SUITE_P(Some, Sleepy, ::testing::Range(0, 200));

}  // namespace
