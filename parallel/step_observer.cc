#include "parallel/step_observer.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <new>

#include "absl/strings/str_cat.h"
#include "parallel/internal/record.h"
#include "parallel/step_observer_internal.h"

// GoogleTest's UnitTest::GetInstance() and UnitTest::failed_test_count(),
// referenced weakly by their Itanium C++ ABI names: both are null unless
// gtest is linked into the program. This lets the library notice a gtest
// failure inside a child without depending on gtest. failed_test_count() is
// a const member function; under the ABI it takes `this` as its first
// argument, which is how it is declared here.
extern void* ParallelGtestInstance() __asm__(
    "_ZN7testing8UnitTest11GetInstanceEv") __attribute__((weak));
extern int ParallelGtestFailedTestCount(const void* unit_test) __asm__(
    "_ZNK7testing8UnitTest17failed_test_countEv") __attribute__((weak));

namespace parallel {
namespace {

constexpr int kMaxObservers = 8;
std::atomic<int> g_observer_count{0};
StepObserver* g_observers[kMaxObservers] = {};
std::mutex g_register_mutex;
std::atomic<bool> g_gtest_handled{false};

// Set in a child only, right after fork. Checked before the mutex is taken,
// so that the caller (where it is always -1) never holds the mutex and a
// child forked meanwhile cannot inherit it locked.
std::atomic<int> g_note_fd{-1};
std::mutex g_note_mutex;  // one record at a time from the child's threads

// The fallback when gtest is linked but no observer handles it: a test that
// went from passing to failing while a body ran in a child failed there, and
// the child's gtest state dies with it. (A test that had already failed
// fails anyway.)
class GtestFallback {
 public:
  static bool active() {
    return !g_gtest_handled.load(std::memory_order_relaxed) &&
           ParallelGtestInstance != nullptr &&
           ParallelGtestFailedTestCount != nullptr;
  }
  void Before() { failed_before_ = Failed(); }
  std::optional<ExceptionInfo> After() {
    if (Failed() <= failed_before_) return std::nullopt;
    const char* text =
        "a GoogleTest assertion failed inside this step, in a child process "
        "whose test results die with it; link //testing:gtest_bridge into the "
        "test so that it is reported at its file:line in the calling test";
    std::fprintf(stderr, "\n*** parallel: %s ***\n", text);
    std::fflush(stderr);
    return ExceptionInfo{"testing::TestPartResult", text, "", "", 0};
  }

 private:
  static int Failed() {
    return ParallelGtestFailedTestCount(ParallelGtestInstance());
  }
  int failed_before_ = 0;
};

thread_local GtestFallback g_fallback;

}  // namespace

void AddStepObserver(StepObserver* observer) {
  std::lock_guard<std::mutex> lock(g_register_mutex);
  const int count = g_observer_count.load();
  if (count == kMaxObservers) {
    std::fprintf(stderr, "parallel: more than %d step observers\n",
                 kMaxObservers);
    std::abort();
  }
  g_observers[count] = observer;
  if (observer->handles_gtest()) g_gtest_handled = true;
  g_observer_count.store(count + 1);
}

bool SendNoteToCaller(absl::string_view note) {
  const int fd = g_note_fd.load(std::memory_order_relaxed);
  if (fd < 0) return false;
  std::lock_guard<std::mutex> lock(g_note_mutex);
  return internal::WriteRecord(fd, internal::RecordKind::kNote, note.data(),
                               note.size());
}

namespace internal {

void SetNoteChannel(int fd) {
  // A fresh mutex: another thread of the parent may have held it at fork.
  new (&g_note_mutex) std::mutex;
  g_note_fd.store(fd, std::memory_order_relaxed);
}

void ObserversBeforeBody(bool in_child) {
  const int count = g_observer_count.load();
  for (int i = 0; i < count; ++i) g_observers[i]->BeforeBody(in_child);
  if (in_child && GtestFallback::active()) g_fallback.Before();
}

std::optional<ExceptionInfo> ObserversAfterBody(bool in_child) {
  std::optional<ExceptionInfo> first;
  const int count = g_observer_count.load();
  for (int i = 0; i < count; ++i) {
    std::optional<ExceptionInfo> failure = g_observers[i]->AfterBody(in_child);
    if (failure && !first) first = std::move(failure);
  }
  if (in_child && GtestFallback::active()) {
    std::optional<ExceptionInfo> failure = g_fallback.After();
    if (failure && !first) first = std::move(failure);
  }
  return first;
}

void DeliverNotes(const std::string& step, int pid,
                  const std::vector<std::string>& notes) {
  const int count = g_observer_count.load();
  for (const std::string& note : notes) {
    for (int i = 0; i < count; ++i) g_observers[i]->OnNote(step, pid, note);
  }
}

}  // namespace internal
}  // namespace parallel
