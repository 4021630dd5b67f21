// The parts of gtest_parallel (gtest_parallel.cc): finding the tests of
// GoogleTest binaries, ordering them by saved times, running them as
// parallel steps with retries, and reporting.
//
//   Options options;  options.binaries = {"out/unit_tests"};
//   absl::StatusOr<std::vector<Task>> tasks = FindTasks(options);
//   Runner runner(options, *tasks);
//   runner.Run();  runner.PrintFailures(std::cout);  runner.PrintSummary(...)
//
// Thread-safety: thread-compatible.

#ifndef TOOLS_GTEST_PARALLEL_LIB_H_
#define TOOLS_GTEST_PARALLEL_LIB_H_

#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallel/step.h"

namespace tools {
namespace gtest {

struct Options {
  std::vector<std::string> binaries;
  std::vector<std::string> test_args;  // after `--`, for every test
  int workers = 1;
  int repeat = 1;
  int retry_failed = 0;
  std::string gtest_filter;
  bool also_run_disabled = false;
  bool serialize_test_cases = false;
  std::string output_dir;
  bool print_test_times = false;
  int shard_count = 1;
  int shard_index = 0;
  std::string json;
  std::string junit;
  // --trace / --timeline: every test process of every round (a batch is one
  // event, named by its first test), as parallel/trace.h writes them.
  std::string trace;
  std::string timeline;
  absl::Duration timeout = absl::InfiniteDuration();
  // Tests per process. kAutoBatch (the default): with a timeout, each test
  // alone (a timeout is per test); without, each round's tests are dealt
  // into about one process per worker, balanced by the saved times (see
  // MakeBatches). 1: each alone, as gtest-parallel. Retries and tests a
  // crash or timeout kept from running always run alone.
  static constexpr int kAutoBatch = 0;
  int batch_size = kAutoBatch;
};

// The test names in `--gtest_list_tests` output ("Suite.Test", typed and
// parameterized ones included: "Typed/0.Test", "Param/Suite.Test/3"), with
// gtest's "# TypeParam = ..." comments dropped.
std::vector<std::string> ParseTestList(absl::string_view listing);

// "12 ms": how the tool shows a test's time.
std::string Milliseconds(absl::Duration duration);

// One test's part of a batch's output, from gtest's "[ RUN      ]" line to
// its "[       OK ]" / "[  FAILED  ]" / "[  SKIPPED ]" line.
struct BatchResult {
  enum State { kNotStarted, kUnfinished, kPassed, kFailed };
  State state = kNotStarted;
  absl::Duration duration;  // as gtest printed it
  std::string output;
};
// Splits a batch's output by test; `tests` are the batch's test names.
std::vector<BatchResult> SplitBatchOutput(
    absl::string_view output, const std::vector<std::string>& tests);

struct Attempt {
  bool passed = false;
  bool timed_out = false;
  int exit_code = -1;
  int signal = 0;
  absl::Duration duration;
  std::string output;  // kept for failed attempts only
};

struct Task {
  std::string binary;
  std::string test;  // "Suite.Test", or "Suite.*" with --serialize_test_cases
  int repetition = 1;
  std::optional<double> last_seconds;  // from the saved times
  std::vector<Attempt> attempts;
};

// Saved test times, one file for every binary:
// $XDG_CACHE_HOME (or ~/.cache)/parallel/gtest-parallel-times.
class TestTimes {
 public:
  static std::string DefaultPath();
  explicit TestTimes(std::string path);
  std::optional<double> Get(const std::string& binary,
                            const std::string& test) const;
  void Set(const std::string& binary, const std::string& test, double seconds);
  // Written atomically (temp file, rename); false if it could not be.
  bool Save() const;

 private:
  std::string path_;
  std::map<std::pair<std::string, std::string>, double> times_;
};

// The processes of one round: tasks[indices] grouped by binary and
// repetition, at most `batch` per process; kAutoBatch deals them into about
// one process per worker (as gtest's and Bazel's sharding), each task to the least loaded one of its group by
// its saved time (longest first, so this is LPT scheduling; an unknown time
// counts as the mean of the known ones). Returned longest first.
std::vector<std::vector<size_t>> MakeBatches(const std::vector<Task>& tasks,
                                             const std::vector<size_t>& indices,
                                             int batch, int workers);

// Lists each binary's tests (filter, disabled, sharding, repetitions) and
// orders them: never timed first, then slowest first. An error names a
// binary whose tests could not be listed.
absl::StatusOr<std::vector<Task>> FindTasks(const Options& options);

class Runner {
 public:
  Runner(Options options, std::vector<Task> tasks);
  // Runs every task, then the failed ones again up to retry_failed times.
  // Returns the signal that interrupted the run, or 0.
  int Run();
  // The output of every failed attempt, in task order.
  void PrintFailures(std::ostream& out) const;
  // Counts, failed and flaky tests, and test times if asked.
  void PrintSummary(std::ostream& out) const;
  void SaveTimes() const;
  // --dump_json_test_results and --junit; false (with a message) on error.
  bool WriteReports() const;
  bool AllPassed() const;
  const std::vector<Task>& tasks() const { return tasks_; }

  // gtest-parallel's JSON format (version 3).
  std::string JsonResults() const;

 private:
  // One round over tasks_[indices], `batch` tests per process; the tasks a
  // crash or timeout in their batch kept from running go to *not_run.
  // False if interrupted.
  bool RunRound(const std::vector<size_t>& indices, int batch,
                std::vector<size_t>* not_run, int* interrupted);
  // The attempts of a batch's tests, from its output.
  void JudgeBatch(const std::vector<size_t>& job,
                  const parallel::StepReport& step, const std::string& output,
                  std::vector<size_t>* not_run);
  void Record(Task& task, Attempt attempt, std::string output);
  void WriteLog(const Task& task, const Attempt& attempt,
                const std::string& output) const;

  const Options options_;
  std::vector<Task> tasks_;
  // Every round's processes, for --trace and --timeline.
  parallel::RunReport processes_;
  bool interrupted_ = false;
  absl::Duration elapsed_;
};

}  // namespace gtest
}  // namespace tools

#endif  // TOOLS_GTEST_PARALLEL_LIB_H_
