// A gtest binary that fails by design, run by gtest_bridge_test.sh (it is
// tagged manual: `bazel test //...` runs it only through that test). Each
// assertion carries a marker that the script finds in this file to learn
// the line gtest must report.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/parallel.h"
#include "testing/gtest_bridge.h"
#include "testing/in_process_steps.h"
#include "testing/step_matchers.h"

namespace {

using ::parallel::BackgroundFailure;
using ::parallel::testing::ContainsFailure;
using ::parallel::testing::HasFailureOfType;

constexpr char kGtestType[] = "testing::TestPartResult";

void Print(const char* text) {
  std::fputs(text, stdout);
  std::fflush(stdout);
}

TEST(Demo, ExpectInAStep) {
  try {
    parallel::RunParallelSteps({[] { EXPECT_EQ(1, 2) << "marker-expect"; },
                                [] { Print("second step ran\n"); }});
  } catch (const BackgroundFailure& failure) {
    EXPECT_THAT(failure, ContainsFailure(kGtestType, "step 0",
                                    ::testing::HasSubstr("marker-expect")));
  }
}

TEST(Demo, AssertEndsItsFunction) {
  EXPECT_THROW(parallel::RunParallelSteps({[] {
                 ASSERT_TRUE(false) << "marker-assert";
                 Print("not reached\n");
               }}),
               BackgroundFailure);
}

TEST(Demo, NonfatalLetsTheStepRunOn) {
  EXPECT_THROW(parallel::RunParallelSteps({[] {
                 ADD_FAILURE() << "marker-add-failure";
                 Print("after ADD_FAILURE\n");
               }}),
               BackgroundFailure);
}

TEST(Demo, ExpectThenThrow) {
  try {
    parallel::RunParallelSteps({[] {
      EXPECT_TRUE(false) << "marker-then-throw";
      throw std::runtime_error("thrown after the expectation");
    }});
  } catch (const BackgroundFailure& failure) {
    EXPECT_THAT(failure, HasFailureOfType("std::runtime_error"));
  }
}

TEST(Demo, ExpectThenCrash) {
  try {
    parallel::RunParallelSteps({[] {
      EXPECT_TRUE(false) << "marker-then-crash";
      std::abort();
    }});
  } catch (const BackgroundFailure& failure) {
    EXPECT_THAT(failure, HasFailureOfType(parallel::kProcessUnexpectedExit));
  }
}

TEST(Demo, NestedSteps) {
  EXPECT_THROW(parallel::RunParallelSteps({[] {
                 parallel::RunParallelSteps({[] {}, [] {
                   EXPECT_EQ(3, 4) << "marker-nested";
                 }});
               }}),
               BackgroundFailure);
}

TEST(Demo, TaskRunnerInput) {
  try {
    parallel::BackgroundTaskRunner<int> runner(
        [](int i) { EXPECT_NE(i, 1) << "marker-task-runner"; });
    for (int i = 0; i < 3; ++i) runner.Put(i);
    runner.Wait();
  } catch (const BackgroundFailure& failure) {
    EXPECT_THAT(failure, ContainsFailure(kGtestType, "input 1 (1)"));
  }
}

TEST(Demo, ProcessPoolTask) {
  EXPECT_THROW(parallel::RunTasksInProcessPool(
                   [](int i) {
                     EXPECT_LT(i, 2) << "marker-pool";
                     return i;
                   },
                   std::vector<std::tuple<int>>{{0}, {1}, {2}}),
               BackgroundFailure);
}

TEST(Demo, ExecutorTask) {
  parallel::ProcessPoolExecutor executor;
  parallel::Future<int> future = executor.Submit(+[](int i) {
    EXPECT_EQ(i, 2) << "marker-executor";
    return i;
  }, 1);
  EXPECT_FALSE(future.Get().ok());  // the task failed: its assertion did
}

class Counter {
 public:
  virtual ~Counter() = default;
  virtual void Add(int n) = 0;
};
class MockCounter : public Counter {
 public:
  MOCK_METHOD(void, Add, (int n), (override));
};

TEST(Demo, MockExpectationInAStep) {
  EXPECT_THROW(parallel::RunParallelSteps({[] {
                 MockCounter counter;
                 EXPECT_CALL(counter, Add(5)).Times(1);  // marker-mock
                 counter.Add(6);
               }}),
               BackgroundFailure);
}

TEST(Demo, HaltOnError) {
  parallel::ParallelOptions options;
  options.halt_on_error = true;
  EXPECT_THROW(parallel::RunParallelSteps(
                   {[] { EXPECT_EQ(5, 6) << "marker-halt"; },
                    [] { usleep(300000); }},
                   options),
               BackgroundFailure);
}

TEST(Demo, InProcessFake) {
  parallel::testing::InProcessSteps in_process;
  EXPECT_THROW(parallel::RunParallelSteps(
                   {[] { EXPECT_EQ(7, 8) << "marker-in-process"; }}),
               BackgroundFailure);
}

TEST(Demo, PassingSteps) {
  EXPECT_TRUE(parallel::testing::GtestBridgeActive());
  parallel::RunParallelSteps(
      {[] { EXPECT_EQ(1, 1); }, [] { Print("passing step\n"); }});
  parallel::BackgroundTaskRunner<int> runner([](int i) { EXPECT_GE(i, 0); });
  runner.Put(1);
  runner.Wait();
}

}  // namespace
