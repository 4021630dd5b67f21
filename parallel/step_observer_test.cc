#include "parallel/step_observer.h"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/parallel.h"
#include "testing/in_process_steps.h"

namespace parallel {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Fails a body that said "fail me" (a note), and records every note the
// caller receives.
class Recorder : public StepObserver {
 public:
  void BeforeBody(bool in_child) override {
    (void)in_child;
    fail_next_ = false;
  }
  std::optional<ExceptionInfo> AfterBody(bool in_child) override {
    if (!fail_next_) return std::nullopt;
    return ExceptionInfo{"test::Observed",
                         in_child ? "in a child" : "in the caller", "", "", 0};
  }
  void OnNote(const std::string& step, int pid,
              absl::string_view note) override {
    EXPECT_GT(pid, 0);
    notes.emplace_back(step, std::string(note));
  }

  bool fail_next_ = false;  // set by the body, in its own process
  std::vector<std::pair<std::string, std::string>> notes;
};

Recorder* const g_recorder = [] {
  auto* recorder = new Recorder;
  AddStepObserver(recorder);
  return recorder;
}();

TEST(StepObserver, NotesReachTheCallerInOrderEvenBeforeACrash) {
  g_recorder->notes.clear();
  try {
    RunParallelSteps({[] {
                        EXPECT_TRUE(SendNoteToCaller("a1"));
                        EXPECT_TRUE(SendNoteToCaller("a2"));
                      },
                      [] {
                        SendNoteToCaller("b1");
                        std::abort();
                      }});
    FAIL() << "the second step crashed";
  } catch (const BackgroundFailure& failure) {
    EXPECT_TRUE(failure.HasFailureType(kProcessUnexpectedExit));
  }
  // A step's notes in the order sent; steps in the order they end.
  std::map<std::string, std::vector<std::string>> by_step;
  for (const auto& [step, note] : g_recorder->notes) {
    by_step[step].push_back(note);
  }
  EXPECT_THAT(by_step["step 0"], ElementsAre("a1", "a2"));
  EXPECT_THAT(by_step["step 1"], ElementsAre("b1"));
  EXPECT_FALSE(SendNoteToCaller("not in a child"));
}

TEST(StepObserver, AfterBodyFailsABodyThatSucceeded) {
  absl::StatusOr<RunReport> report = RunSteps(
      {Step::Function([]() -> absl::StatusOr<std::string> {
         g_recorder->fail_next_ = true;  // this child's copy
         return "";
       }),
       Step::Function([]() -> absl::StatusOr<std::string> { return ""; })});
  ASSERT_TRUE(report.ok());
  ASSERT_TRUE(report->steps[0].error.has_value());
  EXPECT_EQ(report->steps[0].error->type, "test::Observed");
  EXPECT_EQ(report->steps[0].error->message, "in a child");
  EXPECT_EQ(report->steps[1].outcome, StepOutcome::kSucceeded);
}

TEST(StepObserver, TaskRunnerInputsSendNotesAndCanBeFailed) {
  g_recorder->notes.clear();
  std::vector<ExceptionInfo> failures;
  try {
    BackgroundTaskRunner<int> runner([](int i) {
      SendNoteToCaller(absl::StrCat("input ", i));
      if (i == 1) g_recorder->fail_next_ = true;
    });
    for (int i = 0; i < 3; ++i) runner.Put(i);
    runner.Wait();
  } catch (const BackgroundFailure& failure) {
    failures = failure.exc_infos();
  }
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].type, "test::Observed");
  EXPECT_EQ(failures[0].step, "input 1 (1)");
  // Each input's notes come when it ends: inputs end in any order.
  EXPECT_THAT(g_recorder->notes,
              UnorderedElementsAre(Pair("input 0 (0)", "input 0"),
                          Pair("input 1 (1)", "input 1"),
                          Pair("input 2 (2)", "input 2")));
}

TEST(StepObserver, InProcessBodiesAreObservedInTheCaller) {
  testing::InProcessSteps in_process;
  g_recorder->notes.clear();
  absl::StatusOr<RunReport> report =
      RunSteps({Step::Function([]() -> absl::StatusOr<std::string> {
        EXPECT_FALSE(SendNoteToCaller("nowhere to send"));
        g_recorder->fail_next_ = true;
        return "";
      })});
  ASSERT_TRUE(report.ok());
  ASSERT_TRUE(report->steps[0].error.has_value());
  EXPECT_EQ(report->steps[0].error->message, "in the caller");
  EXPECT_THAT(g_recorder->notes, IsEmpty());
}

}  // namespace
}  // namespace parallel
