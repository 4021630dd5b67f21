#include "tools/gtest_parallel_lib.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "parallel/parallel.h"
#include "tools/reports.h"

namespace tools {
namespace gtest {
namespace {

// An unlinked file in $TMPDIR (or /tmp) for a round's replayed output.
int CreateScratchFile() {
  const char* dir = std::getenv("TMPDIR");
  const std::string where = dir != nullptr && *dir != '\0' ? dir : "/tmp";
  return ::open(where.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
}

std::string ReadRange(int fd, uint64_t offset, uint64_t size) {
  std::string bytes(size, '\0');
  uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, bytes.data() + done, size - done,
                              static_cast<off_t>(offset + done));
    if (n <= 0) break;
    done += n;
  }
  bytes.resize(done);
  return bytes;
}

std::string AbsolutePath(const std::string& path) {
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) != nullptr ? resolved : path;
}

// "[done/total] Suite.Test (12 ms)" redrawn in place on a terminal.
class Progress {
 public:
  Progress(size_t total, bool shown) : total_(total), shown_(shown) {}
  void Ended(const std::string& test, absl::Duration duration) {
    ++done_;
    if (!shown_) return;
    std::string line = absl::StrCat("\r\x1b[K[", done_, "/", total_, "] ", test,
                                    " (", Milliseconds(duration), ")");
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
  }
  ~Progress() {
    if (shown_ && done_ > 0) std::fputs("\r\x1b[K", stdout);
  }

 private:
  size_t total_;
  size_t done_ = 0;
  bool shown_;
};

}  // namespace

std::vector<std::string> ParseTestList(absl::string_view listing) {
  std::vector<std::string> tests;
  std::string suite;
  for (absl::string_view line : absl::StrSplit(listing, '\n')) {
    // Typed and parameterized tests carry "  # TypeParam = ..." comments.
    const size_t comment = line.find("  #");
    if (comment != absl::string_view::npos) line = line.substr(0, comment);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (line[0] != ' ') {
      suite = std::string(absl::StripAsciiWhitespace(line));
      continue;
    }
    if (suite.empty() || suite.back() != '.') continue;  // not gtest's list
    tests.push_back(absl::StrCat(suite, absl::StripAsciiWhitespace(line)));
  }
  return tests;
}

std::vector<BatchResult> SplitBatchOutput(
    absl::string_view output, const std::vector<std::string>& tests) {
  std::vector<BatchResult> results(tests.size());
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < tests.size(); ++i) index[tests[i]] = i;
  BatchResult* current = nullptr;
  std::string current_name;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    const std::string text = absl::StrCat(line, "\n");
    if (absl::ConsumePrefix(&line, "[ RUN      ] ")) {
      auto it = index.find(std::string(line));
      current = it == index.end() ? nullptr : &results[it->second];
      current_name = std::string(line);
      if (current != nullptr) {
        current->state = BatchResult::kUnfinished;
        current->output = text;
      }
      continue;
    }
    if (current == nullptr) continue;
    current->output += text;
    BatchResult::State end = BatchResult::kUnfinished;
    if (absl::ConsumePrefix(&line, "[       OK ] ") ||
        absl::ConsumePrefix(&line, "[  SKIPPED ] ")) {
      end = BatchResult::kPassed;
    } else if (absl::ConsumePrefix(&line, "[  FAILED  ] ")) {
      end = BatchResult::kFailed;
    }
    // "Suite.Test (12 ms)": the end of the test that runs.
    if (end == BatchResult::kUnfinished ||
        !absl::ConsumePrefix(&line, current_name) ||
        !absl::ConsumePrefix(&line, " (")) {
      continue;
    }
    int64_t ms = 0;
    if (absl::ConsumeSuffix(&line, " ms)") && absl::SimpleAtoi(line, &ms)) {
      current->duration = absl::Milliseconds(ms);
    }
    current->state = end;
    current = nullptr;
  }
  return results;
}

std::string TestTimes::DefaultPath() {
  std::string base;
  if (const char* cache = std::getenv("XDG_CACHE_HOME");
      cache != nullptr && *cache != '\0') {
    base = cache;
  } else if (const char* home = std::getenv("HOME");
             home != nullptr && *home != '\0') {
    base = absl::StrCat(home, "/.cache");
  } else {
    return "";
  }
  return absl::StrCat(base, "/parallel/gtest-parallel-times");
}

TestTimes::TestTimes(std::string path) : path_(std::move(path)) {
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, '\t');
    double seconds = 0;
    if (fields.size() == 3 && absl::SimpleAtod(fields[2], &seconds)) {
      times_[{fields[0], fields[1]}] = seconds;
    }
  }
}

std::optional<double> TestTimes::Get(const std::string& binary,
                                     const std::string& test) const {
  auto it = times_.find({binary, test});
  if (it == times_.end()) return std::nullopt;
  return it->second;
}

void TestTimes::Set(const std::string& binary, const std::string& test,
                    double seconds) {
  times_[{binary, test}] = seconds;
}

bool TestTimes::Save() const {
  if (path_.empty()) return false;
  const std::string dir = path_.substr(0, path_.rfind('/'));
  ::mkdir(dir.substr(0, dir.rfind('/')).c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  const std::string temp = absl::StrCat(path_, ".", ::getpid());
  {
    std::ofstream out(temp);
    for (const auto& [key, seconds] : times_) {
      out << key.first << '\t' << key.second << '\t' << seconds << '\n';
    }
    if (!out.flush()) {
      ::unlink(temp.c_str());
      return false;
    }
  }
  return ::rename(temp.c_str(), path_.c_str()) == 0;
}

absl::StatusOr<std::vector<Task>> FindTasks(const Options& options) {
  const TestTimes times(TestTimes::DefaultPath());
  std::vector<Task> tasks;
  int index = 0;  // over every test of every binary, for sharding
  for (const std::string& given : options.binaries) {
    const std::string binary = AbsolutePath(given);
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), options.test_args.begin(), options.test_args.end());
    argv.push_back("--gtest_list_tests");
    if (!options.gtest_filter.empty()) {
      argv.push_back("--gtest_filter=" + options.gtest_filter);
    }
    const int listing_fd = CreateScratchFile();
    if (listing_fd < 0) {
      return absl::ErrnoToStatus(errno, "cannot create a scratch file");
    }
    parallel::ParallelOptions run;
    run.output_fd = listing_fd;
    absl::StatusOr<parallel::RunReport> report =
        parallel::RunSteps({parallel::Step::Command(argv)}, run);
    struct stat st = {};
    ::fstat(listing_fd, &st);
    const std::string listing =
        ReadRange(listing_fd, 0, static_cast<uint64_t>(st.st_size));
    ::close(listing_fd);
    if (!report.ok() || report->failed_count() != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot list the tests of '", given, "': ",
                       !report.ok() ? std::string(report.status().message())
                                    : report->steps[0].error->message));
    }
    std::vector<std::string> tests = ParseTestList(listing);
    std::vector<std::string> suites;
    for (const std::string& test : tests) {
      if (!options.also_run_disabled && absl::StrContains(test, "DISABLED_")) {
        continue;
      }
      std::string name = test;
      if (options.serialize_test_cases) {
        name = test.substr(0, test.find('.')) + ".*";
        if (std::find(suites.begin(), suites.end(), name) != suites.end()) {
          continue;
        }
        suites.push_back(name);
      }
      if (index++ % options.shard_count != options.shard_index) continue;
      for (int r = 1; r <= options.repeat; ++r) {
        tasks.push_back(Task{binary, name, r, times.Get(binary, name), {}});
      }
    }
  }
  // Never timed first (they may be slow), then slowest first, so that the
  // short ones fill in at the end.
  std::stable_sort(
      tasks.begin(), tasks.end(), [](const Task& a, const Task& b) {
        if (a.last_seconds.has_value() != b.last_seconds.has_value())
          return !a.last_seconds.has_value();
        return a.last_seconds.value_or(0) > b.last_seconds.value_or(0);
      });
  return tasks;
}

std::vector<std::vector<size_t>> MakeBatches(const std::vector<Task>& tasks,
                                             const std::vector<size_t>& indices,
                                             int batch, int workers) {
  double known_sum = 0;
  int known = 0;
  for (size_t i : indices) {
    if (tasks[i].last_seconds.has_value()) {
      known_sum += *tasks[i].last_seconds;
      ++known;
    }
  }
  const double unknown = known > 0 ? known_sum / known : 1.0;
  auto seconds = [&](size_t i) {
    return tasks[i].last_seconds.value_or(unknown);
  };
  size_t per_job = static_cast<size_t>(std::max(batch, 1));
  if (batch == Options::kAutoBatch) {
    const size_t jobs = static_cast<size_t>(std::max(workers, 1));
    per_job = (indices.size() + jobs - 1) / jobs;
  }
  // Each group (binary, repetition) gets ceil(size / per_job) jobs; a task
  // goes to its group's least loaded job that still has room.
  std::map<std::pair<std::string, int>, std::vector<size_t>> groups;
  for (size_t i : indices) {
    groups[{tasks[i].binary, tasks[i].repetition}].push_back(i);
  }
  std::vector<std::vector<size_t>> jobs;
  std::vector<double> load;
  for (const auto& [key, members] : groups) {
    const size_t first = jobs.size();
    const size_t count = (members.size() + per_job - 1) / per_job;
    jobs.resize(first + count);
    load.resize(first + count, 0.0);
    for (size_t i : members) {  // in the given order: longest first
      size_t best = jobs.size();
      for (size_t j = first; j < jobs.size(); ++j) {
        if (jobs[j].size() < per_job &&
            (best == jobs.size() || load[j] < load[best])) {
          best = j;
        }
      }
      jobs[best].push_back(i);
      load[best] += seconds(i);
    }
  }
  std::vector<size_t> order(jobs.size());
  for (size_t j = 0; j < order.size(); ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return load[a] > load[b]; });
  std::vector<std::vector<size_t>> sorted;
  for (size_t j : order) sorted.push_back(std::move(jobs[j]));
  return sorted;
}

Runner::Runner(Options options, std::vector<Task> tasks)
    : options_(std::move(options)), tasks_(std::move(tasks)) {}

int Runner::Run() {
  const absl::Time start = absl::Now();
  std::vector<size_t> pending(tasks_.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  int interrupted = 0;
  int batch = options_.batch_size;
  if (batch == Options::kAutoBatch &&
      options_.timeout != absl::InfiniteDuration()) {
    batch = 1;  // a timeout is per test: each test alone
  }
  for (int round = 0; !pending.empty();) {
    std::vector<size_t> not_run;
    if (!RunRound(pending, batch, &not_run, &interrupted)) break;
    batch = 1;               // reruns and retries run alone
    if (!not_run.empty()) {  // kept from running by a batch mate: not a retry
      pending = std::move(not_run);
      continue;
    }
    if (round++ == options_.retry_failed) break;
    std::vector<size_t> failed;
    for (size_t i = 0; i < tasks_.size(); ++i) {
      const Task& task = tasks_[i];
      if (!task.attempts.empty() && !task.attempts.back().passed &&
          static_cast<int>(task.attempts.size()) == round) {
        failed.push_back(i);
      }
    }
    pending = std::move(failed);
  }
  elapsed_ = absl::Now() - start;
  interrupted_ = interrupted != 0;
  return interrupted;
}

bool Runner::RunRound(const std::vector<size_t>& indices, int batch,
                      std::vector<size_t>* not_run, int* interrupted) {
  const int capture = CreateScratchFile();
  if (capture < 0) {
    std::perror("gtest_parallel: cannot create a scratch file");
    std::exit(255);
  }
  const std::vector<std::vector<size_t>> jobs =
      MakeBatches(tasks_, indices, batch, options_.workers);
  std::vector<parallel::Step> steps;
  for (const std::vector<size_t>& job : jobs) {
    const Task& first = tasks_[job.front()];
    std::vector<std::string> names;
    for (size_t i : job) names.push_back(tasks_[i].test);
    std::vector<std::string> argv = {first.binary};
    argv.insert(argv.end(), options_.test_args.begin(),
                options_.test_args.end());
    argv.push_back("--gtest_filter=" + absl::StrJoin(names, ":"));
    if (options_.also_run_disabled) {
      argv.push_back("--gtest_also_run_disabled_tests");
    }
    steps.push_back(parallel::Step::Command(
        std::move(argv),
        job.size() == 1
            ? first.test
            : absl::StrCat(first.test, " and ", job.size() - 1, " more")));
  }
  parallel::ParallelOptions run;
  run.max_parallel = options_.workers;
  run.timeout = options_.timeout;
  run.output_fd = capture;
  Progress progress(jobs.size(), ::isatty(STDOUT_FILENO) != 0);
  parallel::RunHooks hooks;
  hooks.on_end = [&](size_t, const parallel::StepReport& step) {
    progress.Ended(step.name, step.duration);
  };
  absl::StatusOr<parallel::RunReport> report =
      parallel::RunSteps(std::move(steps), run, hooks);
  if (!report.ok()) {
    std::fprintf(stderr, "gtest_parallel: %s\n",
                 std::string(report.status().message()).c_str());
    std::exit(255);
  }
  if (processes_.start_time == absl::InfinitePast()) {
    processes_.start_time = report->start_time;
  }
  processes_.end_time = report->end_time;
  processes_.slots = options_.workers;
  // Replayed in step order: each step's bytes follow the previous ones'.
  uint64_t offset = 0;
  for (size_t k = 0; k < jobs.size(); ++k) {
    const parallel::StepReport& step = report->steps[k];
    processes_.steps.push_back(step);
    std::string output = ReadRange(capture, offset, step.output_bytes);
    offset += step.output_bytes;
    if (!step.started) continue;  // interrupted before it began
    if (jobs[k].size() > 1) {
      JudgeBatch(jobs[k], step, output, not_run);
      continue;
    }
    Attempt attempt;
    attempt.passed = step.outcome == parallel::StepOutcome::kSucceeded;
    attempt.timed_out =
        step.error.has_value() && step.error->type == parallel::kProcessTimeout;
    attempt.exit_code = step.exit_code;
    attempt.signal = step.signal;
    attempt.duration = step.duration;
    Record(tasks_[jobs[k].front()], std::move(attempt), std::move(output));
  }
  ::close(capture);
  *interrupted = report->interrupt_signal;
  return report->interrupt_signal == 0;
}

void Runner::Record(Task& task, Attempt attempt, std::string output) {
  if (!options_.output_dir.empty()) WriteLog(task, attempt, output);
  if (!attempt.passed) attempt.output = std::move(output);
  task.attempts.push_back(std::move(attempt));
}

void Runner::JudgeBatch(const std::vector<size_t>& job,
                        const parallel::StepReport& step,
                        const std::string& output,
                        std::vector<size_t>* not_run) {
  std::vector<std::string> names;
  for (size_t i : job) names.push_back(tasks_[i].test);
  std::vector<BatchResult> results = SplitBatchOutput(output, names);
  const bool process_passed = step.outcome == parallel::StepOutcome::kSucceeded;
  bool any_failed = false;
  for (const BatchResult& result : results) {
    any_failed |= result.state == BatchResult::kFailed ||
                  result.state == BatchResult::kUnfinished;
  }
  for (size_t k = 0; k < job.size(); ++k) {
    BatchResult& result = results[k];
    Attempt attempt;
    attempt.exit_code = step.exit_code;
    attempt.signal = step.signal;
    attempt.duration = result.duration;
    switch (result.state) {
      case BatchResult::kNotStarted:
        if (!process_passed) {
          not_run->push_back(job[k]);  // its batch mate crashed or hung
          continue;
        }
        // The process passed without running it: never a silent pass.
        result.output = "(the test did not run in its batch)\n" + output;
        break;
      case BatchResult::kUnfinished:  // it crashed or hung
        attempt.timed_out = step.error.has_value() &&
                            step.error->type == parallel::kProcessTimeout;
        attempt.duration = step.duration;
        break;
      case BatchResult::kPassed:
        // A process that failed with every test passing (a failure at exit)
        // fails them all.
        attempt.passed = process_passed || any_failed;
        break;
      case BatchResult::kFailed:
        break;
    }
    if (attempt.passed) {
      attempt.exit_code = 0;
      attempt.signal = 0;
    }
    // A failure at exit shows the whole batch's output.
    std::string own = attempt.passed || result.state != BatchResult::kPassed
                          ? std::move(result.output)
                          : output;
    Record(tasks_[job[k]], std::move(attempt), std::move(own));
  }
}

void Runner::WriteLog(const Task& task, const Attempt& attempt,
                      const std::string& output) const {
  const std::string base = task.binary.substr(task.binary.rfind('/') + 1);
  const std::string name = absl::StrReplaceAll(
      absl::StrCat(base, "-", task.test, "-", task.repetition, "-",
                   task.attempts.size() + 1, attempt.passed ? "" : "-FAILED",
                   ".log"),
      {{"/", "_"}, {"*", "ALL"}});
  std::ofstream(absl::StrCat(options_.output_dir, "/", name)) << output;
}

void Runner::SaveTimes() const {
  TestTimes times(TestTimes::DefaultPath());
  for (const Task& task : tasks_) {
    for (const Attempt& attempt : task.attempts) {
      if (attempt.passed) {
        times.Set(task.binary, task.test,
                  absl::ToDoubleSeconds(attempt.duration));
      }
    }
  }
  times.Save();  // best effort: only the order of the next run depends on it
}

bool Runner::AllPassed() const {
  for (const Task& task : tasks_) {
    if (task.attempts.empty() || !task.attempts.back().passed) return false;
  }
  return true;
}

std::string Milliseconds(absl::Duration duration) {
  return absl::StrCat(absl::ToInt64Milliseconds(duration), " ms");
}

}  // namespace gtest
}  // namespace tools
