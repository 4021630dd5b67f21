// Reporting for gtest_parallel: failures, the summary, gtest-parallel's
// JSON and JUnit (gtest_parallel_lib.h).

#include <signal.h>
#include <string.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "parallel/parallel.h"
#include "tools/gtest_parallel_lib.h"
#include "tools/reports.h"

namespace tools {
namespace gtest {
namespace {

std::string Basename(const std::string& path) {
  return path.substr(path.rfind('/') + 1);
}

// How an attempt ended, for failure headers and the summary.
std::string Ending(const Attempt& attempt) {
  if (attempt.timed_out) return "timed out";
  if (attempt.passed) return "passed";
  if (attempt.signal != 0) {
    const char* name = sigabbrev_np(attempt.signal);
    return absl::StrCat("killed by signal ", attempt.signal,
                        name != nullptr ? absl::StrCat(" (SIG", name, ")") : "");
  }
  return absl::StrCat("exit code ", attempt.exit_code);
}

}  // namespace

void Runner::PrintFailures(std::ostream& out) const {
  for (const Task& task : tasks_) {
    for (size_t a = 0; a < task.attempts.size(); ++a) {
      const Attempt& attempt = task.attempts[a];
      if (attempt.passed) continue;
      out << "[  FAILED  ] " << task.test << " (" << Basename(task.binary)
          << (options_.repeat > 1 ? absl::StrCat(", run ", task.repetition)
                                  : "")
          << (a > 0 ? absl::StrCat(", retry ", a) : "") << "): "
          << Ending(attempt) << "\n"
          << attempt.output;
      if (!attempt.output.empty() && attempt.output.back() != '\n') {
        out << "\n";
      }
    }
  }
}

void Runner::PrintSummary(std::ostream& out) const {
  std::vector<const Task*> failed;
  std::vector<const Task*> flaky;
  size_t ran = 0;
  for (const Task& task : tasks_) {
    if (task.attempts.empty()) continue;
    ++ran;
    if (!task.attempts.back().passed) {
      failed.push_back(&task);
    } else if (task.attempts.size() > 1) {
      flaky.push_back(&task);
    }
  }
  out << "[==========] " << ran << " of " << tasks_.size()
      << " test runs done in " << absl::FormatDuration(absl::Trunc(
                                     elapsed_, absl::Milliseconds(1)))
      << ": " << ran - failed.size() << " passed (" << flaky.size()
      << " flaky), " << failed.size() << " failed\n";
  auto list = [&out](const char* title, const std::vector<const Task*>& which) {
    if (which.empty()) return;
    out << title << " (" << which.size() << "):\n";
    for (const Task* task : which) {
      const Attempt& last = task->attempts.back();
      out << "  " << task->test << "  (" << Basename(task->binary) << ", "
          << task->attempts.size() << " attempt"
          << (task->attempts.size() > 1 ? "s" : "") << ", last "
          << Ending(last) << ")\n";
    }
  };
  list("FAILED TESTS", failed);
  list("FLAKY TESTS (failed, then passed on a retry)", flaky);
  if (options_.print_test_times) {
    std::vector<std::pair<absl::Duration, const Task*>> times;
    for (const Task& task : tasks_) {
      for (const Attempt& attempt : task.attempts) {
        times.emplace_back(attempt.duration, &task);
      }
    }
    std::stable_sort(times.begin(), times.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    out << "TEST TIMES:\n";
    for (const auto& [duration, task] : times) {
      out << std::setw(10) << Milliseconds(duration) << "  " << task->test
          << "\n";
    }
  }
}

std::string Runner::JsonResults() const {
  // {"Suite": {"Test": {"actual": "FAIL PASS", "expected": "PASS",
  //  "time": s, "times": [s, s]}}}: names are split at '.', as
  // gtest-parallel does.
  struct Node {
    std::map<std::string, Node> children;
    std::vector<std::string> actual;
    std::vector<double> times;
  };
  Node root;
  std::map<std::string, int> failures = {{"PASS", 0}, {"FAIL", 0},
                                         {"TIMEOUT", 0}};
  for (const Task& task : tasks_) {
    Node* node = &root;
    for (absl::string_view part : absl::StrSplit(task.test, '.')) {
      node = &node->children[std::string(part)];
    }
    for (const Attempt& attempt : task.attempts) {
      const char* result = attempt.timed_out ? "TIMEOUT"
                           : attempt.passed  ? "PASS"
                                             : "FAIL";
      ++failures[result];
      node->actual.push_back(result);
      node->times.push_back(absl::ToDoubleSeconds(attempt.duration));
    }
  }
  std::function<std::string(const Node&)> render = [&](const Node& node) {
    if (node.children.empty()) {
      return absl::StrCat(
          "{\"actual\": ", JsonString(absl::StrJoin(node.actual, " ")),
          ", \"expected\": \"PASS\", \"time\": ",
          node.times.empty() ? 0.0 : node.times.front(), ", \"times\": [",
          absl::StrJoin(node.times, ", "), "]}");
    }
    std::vector<std::string> entries;
    for (const auto& [name, child] : node.children) {
      entries.push_back(absl::StrCat(JsonString(name), ": ", render(child)));
    }
    return absl::StrCat("{", absl::StrJoin(entries, ", "), "}");
  };
  return absl::StrCat(
      "{\"interrupted\": ", interrupted_ ? "true" : "false",
      ", \"path_delimiter\": \".\", \"version\": 3, \"seconds_since_epoch\": ",
      absl::ToUnixSeconds(absl::Now()),
      ", \"num_failures_by_type\": {\"PASS\": ", failures["PASS"],
      ", \"FAIL\": ", failures["FAIL"], ", \"TIMEOUT\": ", failures["TIMEOUT"],
      "}, \"tests\": ", render(root), "}\n");
}

bool Runner::WriteReports() const {
  bool ok = true;
  auto write = [&ok](const std::string& path, const std::string& text) {
    const absl::Status status = parallel::WriteFileAtomically(path, text);
    if (!status.ok()) {
      std::fprintf(stderr, "gtest_parallel: %s\n",
                   std::string(status.message()).c_str());
      ok = false;
    }
  };
  if (!options_.json.empty()) write(options_.json, JsonResults());
  if (!options_.trace.empty()) {
    write(options_.trace, parallel::ChromeTraceJson(processes_));
  }
  if (!options_.timeline.empty()) {
    write(options_.timeline, parallel::TimelineHtml(processes_, "gtest_parallel"));
  }
  if (!options_.junit.empty()) {
    parallel::RunReport report;
    for (const Task& task : tasks_) {
      if (task.attempts.empty()) continue;
      const Attempt& last = task.attempts.back();
      parallel::StepReport& step = report.steps.emplace_back();
      step.name = options_.repeat > 1
                      ? absl::StrCat(task.test, " #", task.repetition)
                      : task.test;
      step.started = true;
      step.outcome = last.passed ? parallel::StepOutcome::kSucceeded
                                 : parallel::StepOutcome::kFailed;
      step.exit_code = last.exit_code;
      step.signal = last.signal;
      step.duration = last.duration;
      if (!last.passed) {
        step.error = parallel::ExceptionInfo{
            last.timed_out ? std::string(parallel::kProcessTimeout)
                           : "gtest failure",
            last.timed_out ? "timed out" : DescribeEnd(step), "", step.name, 0};
        step.output_tail = last.output.size() > 4096
                               ? last.output.substr(last.output.size() - 4096)
                               : last.output;
      }
    }
    write(options_.junit, JunitReport(report));
  }
  return ok;
}

}  // namespace gtest
}  // namespace tools
