#include "testing/gtest_bridge.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "parallel/codec.h"
#include "parallel/step_observer.h"

namespace parallel {
namespace testing {
namespace {

// A note of this bridge: the prefix, then Encode(FailureNote).
constexpr absl::string_view kNotePrefix = "gtest-failure:";
// (type, file, line, message) of a ::testing::TestPartResult.
using FailureNote = std::tuple<int, std::string, int, std::string>;

// gtest's own text for a failure: "file:line: Failure\nmessage".
std::string FailureText(const ::testing::TestPartResult& result) {
  std::string text;
  if (result.file_name() != nullptr) {
    absl::StrAppend(&text, result.file_name());
    if (result.line_number() >= 0) absl::StrAppend(&text, ":", result.line_number());
    text += ": ";
  }
  absl::StrAppend(&text, "Failure\n", result.message());
  return text;
}

class Bridge : public StepObserver, public ::testing::EmptyTestEventListener {
 public:
  bool handles_gtest() const override { return true; }

  // Every gtest failure of this process passes here (the listener is
  // registered in the caller and inherited by its children).
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++failures_;
      if (failures_ == 1 + failures_before_) first_ = FailureText(result);
    }
    // In a child: to the caller, at once (a crash may follow). In the
    // caller (or under the in-process fake) this sends nothing.
    SendNoteToCaller(absl::StrCat(
        kNotePrefix,
        Encode(FailureNote(static_cast<int>(result.type()),
                           result.file_name() ? result.file_name() : "",
                           result.line_number(), result.message()))));
  }

  void BeforeBody(bool in_child) override {
    if (in_child) SilenceChildPrinter();
    std::lock_guard<std::mutex> lock(mutex_);
    failures_before_ = failures_;
    first_.clear();
  }

  std::optional<ExceptionInfo> AfterBody(bool in_child) override {
    (void)in_child;
    std::lock_guard<std::mutex> lock(mutex_);
    const int seen = failures_ - failures_before_;
    if (seen == 0) return std::nullopt;
    std::string message = first_;
    if (seen > 1) absl::StrAppend(&message, "\n(and ", seen - 1, " more)");
    return ExceptionInfo{"testing::TestPartResult", std::move(message), "",
                         "", 0};
  }

  // In the caller: a failure a child saw, reported here at its own place.
  void OnNote(const std::string& step, int pid,
              absl::string_view note) override {
    if (!absl::ConsumePrefix(&note, kNotePrefix)) return;
    FailureNote failure;
    if (!DecodeInto(note, &failure).ok()) return;
    const auto& [type, file, line, message] = failure;
    const std::string text =
        absl::StrCat(message, "\n[in ", step, " (pid ", pid, ")]");
    GTEST_MESSAGE_AT_(file.empty() ? nullptr : file.c_str(), line,
                      text.c_str(),
                      static_cast<::testing::TestPartResult::Type>(type));
  }

 private:
  // The caller prints each failure when it reports it: the child must not
  // print it into the step's output as well.
  static void SilenceChildPrinter() {
    static std::atomic<bool> done{false};
    if (done.exchange(true)) return;
    ::testing::TestEventListeners& listeners =
        ::testing::UnitTest::GetInstance()->listeners();
    // Released, not deleted: gtest may still hold pointers in this child.
    listeners.Release(listeners.default_result_printer());
  }

  std::mutex mutex_;
  int failures_ = 0;
  int failures_before_ = 0;
  std::string first_;
};

// Registered at start-up; gtest owns the listener, which lives as long as
// the process, and so the observer may outlive every run.
Bridge* const g_bridge = [] {
  auto* bridge = new Bridge;
  ::testing::UnitTest::GetInstance()->listeners().Append(bridge);
  AddStepObserver(bridge);
  return bridge;
}();

}  // namespace

bool GtestBridgeActive() { return g_bridge != nullptr; }

}  // namespace testing
}  // namespace parallel
