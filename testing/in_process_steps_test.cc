#include "testing/in_process_steps.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/parallel.h"

namespace parallel {
namespace {

using ::testing::ElementsAre;

class Compiler {
 public:
  virtual ~Compiler() = default;
  virtual void Compile(const std::string& target) = 0;
};

class MockCompiler : public Compiler {
 public:
  MOCK_METHOD(void, Compile, (const std::string& target), (override));
};

TEST(InProcessSteps, MockExpectationsInsideStepsAreSeen) {
  testing::InProcessSteps in_process;
  MockCompiler compiler;
  EXPECT_CALL(compiler, Compile("base"));
  EXPECT_CALL(compiler, Compile("net"));
  RunParallelSteps(
      {[&] { compiler.Compile("base"); }, [&] { compiler.Compile("net"); }});
}

TEST(InProcessSteps, StepsRunInThisProcessInOrder) {
  testing::InProcessSteps in_process;
  std::vector<int>
      order;  // a real run could not write here: its steps are forked
  const pid_t self = getpid();
  ParallelOptions options;
  options.return_values = true;
  std::vector<pid_t> pids = RunParallelSteps<pid_t>({[&] {
                                                       order.push_back(0);
                                                       return getpid();
                                                     },
                                                     [&] {
                                                       order.push_back(1);
                                                       return getpid();
                                                     }},
                                                    options);
  EXPECT_THAT(order, ElementsAre(0, 1));
  EXPECT_THAT(pids, ElementsAre(self, self));
}

TEST(InProcessSteps, FailuresAreGatheredAsInRealRuns) {
  testing::InProcessSteps in_process;
  int ran = 0;
  try {
    RunParallelSteps({[&] {
                        ++ran;
                        throw std::runtime_error("one");
                      },
                      [&] { ++ran; },
                      [&] {
                        ++ran;
                        throw std::logic_error("two");
                      }});
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 2u);
    EXPECT_EQ(failure.exc_infos()[0].type, "std::runtime_error");
    EXPECT_EQ(failure.exc_infos()[0].step, "step 0");
    EXPECT_EQ(failure.exc_infos()[1].type, "std::logic_error");
  }
  EXPECT_EQ(ran, 3);
}

TEST(InProcessSteps, HaltOnErrorStopsAtTheFirstFailure) {
  testing::InProcessSteps in_process;
  int ran = 0;
  ParallelOptions options;
  options.halt_on_error = true;
  EXPECT_THROW(RunParallelSteps({[&] {
                                   ++ran;
                                   throw std::runtime_error("x");
                                 },
                                 [&] { ++ran; }},
                                options),
               BackgroundFailure);
  EXPECT_EQ(ran, 1);
}

TEST(InProcessSteps, TaskRunnersRunInline) {
  testing::InProcessSteps in_process;
  std::vector<int> seen;
  int onexits = 0;
  {
    BackgroundTaskRunner<int>::Options options;
    options.onexit = [&] { ++onexits; };
    BackgroundTaskRunner<int> runner([&](int i) { seen.push_back(i); },
                                     options);
    runner.Put(3);
    EXPECT_THAT(seen, ElementsAre(3));  // ran inside Put(), on this thread
    runner.Put(4);
  }
  EXPECT_THAT(seen, ElementsAre(3, 4));
  EXPECT_EQ(onexits, 1);
  EXPECT_THAT(RunTasksInProcessPool([](int i) { return i * i; },
                                    std::vector<std::tuple<int>>{{2}, {3}}),
              ElementsAre(4, 9));
}

pid_t ThreadId() { return static_cast<pid_t>(syscall(SYS_gettid)); }

TEST(InProcessSteps, ExecutorTasksRunInsideSubmitOnTheCallersThread) {
  testing::InProcessSteps in_process;
  ProcessPoolExecutor executor;
  Future<pid_t> thread = executor.Submit(ThreadId);
  EXPECT_TRUE(thread.done());
  EXPECT_EQ(thread.Get().value(), ThreadId());
  std::vector<absl::StatusOr<pid_t>> mapped =
      executor.Map(ThreadId, std::vector<std::tuple<>>(2));
  ASSERT_EQ(mapped.size(), 2u);
  EXPECT_EQ(mapped[1].value(), ThreadId());
  executor.Shutdown();
  EXPECT_EQ(executor.Submit(ThreadId).Get().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(InProcessSteps, RealRunsResumeWhenItEnds) {
  { testing::InProcessSteps in_process; }
  ParallelOptions options;
  options.return_values = true;
  std::vector<pid_t> pids =
      RunParallelSteps<pid_t>({[] { return getpid(); }}, options);
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_NE(pids[0], getpid());
}

}  // namespace
}  // namespace parallel
