#include "tools/reports.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "parallel/trace.h"

namespace tools {
namespace {

std::string StatusWord(const parallel::StepReport& step) {
  switch (step.outcome) {
    case parallel::StepOutcome::kSucceeded:
      return "passed";
    case parallel::StepOutcome::kFailed:
      return "failed";
    case parallel::StepOutcome::kHalted:
      return step.started ? "halted" : "not_started";
    case parallel::StepOutcome::kInterrupted:
      return "interrupted";
  }
  return "unknown";
}

}  // namespace

std::string DescribeEnd(const parallel::StepReport& step) {
  // A timeout's message ends "(it was stopped by SIGSTOP)" when the command
  // was stopped: the summary says so too.
  auto stopped = [&step] {
    const size_t at = step.error->message.rfind(" (it was stopped by ");
    return at == std::string::npos ? std::string()
                                   : step.error->message.substr(at);
  };
  if (step.error.has_value() && step.error->type == parallel::kProcessTimeout) {
    return "timed out" + stopped();
  }
  if (step.error.has_value() &&
      step.error->type == parallel::kProcessSilentTimeout) {
    return "silent too long" + stopped();
  }
  if (step.error.has_value() && step.error->type == parallel::kOutputLost) {
    // "output could not be captured: No space left on device"
    const size_t at = step.error->message.find("output could not be");
    return at == std::string::npos ? "output lost"
                                   : step.error->message.substr(at);
  }
  if (step.error.has_value() &&
      step.error->type == parallel::kProcessStartError) {
    // As a shell: "exit code 127: x: command not found".
    return step.exit_code >= 0
               ? absl::StrCat("exit code ", step.exit_code, ": ",
                              step.error->message)
               : absl::StrCat("could not start: ", step.error->message);
  }
  if (step.signal != 0) {
    const char* abbrev = sigabbrev_np(step.signal);
    return absl::StrCat("signal ", step.signal,
                        abbrev ? absl::StrCat(" (SIG", abbrev, ")") : "");
  }
  if (step.exit_code >= 0) return absl::StrCat("exit code ", step.exit_code);
  return StatusWord(step);
}

std::string JsonReport(const parallel::RunReport& report,
                       const std::vector<Attempts>* attempts) {
  std::string out = "[\n";
  for (size_t i = 0; i < report.steps.size(); ++i) {
    const parallel::StepReport& step = report.steps[i];
    const Attempts once;
    const Attempts& tries = attempts != nullptr && i < attempts->size()
                                ? (*attempts)[i]
                                : once;
    absl::StrAppend(
        &out, "  {\"command\": ", parallel::JsonString(step.name),
        ", \"status\": ", parallel::JsonString(StatusWord(step)), ", \"exit_code\": ",
        step.exit_code >= 0 ? absl::StrCat(step.exit_code) : "null",
        ", \"signal\": ", step.signal != 0 ? absl::StrCat(step.signal) : "null",
        ", \"duration_ms\": ", absl::ToInt64Milliseconds(step.duration),
        ", \"output_bytes\": ", step.output_bytes, ", \"attempts\": ",
        tries.count, ", \"flaky\": ", tries.flaky() ? "true" : "false");
    if (step.error.has_value()) {
      absl::StrAppend(&out,
                      ", \"error\": ", parallel::JsonString(step.error->ToString()));
    }
    absl::StrAppend(&out, "}", i + 1 < report.steps.size() ? "," : "", "\n");
  }
  return out + "]\n";
}

std::string JunitReport(const parallel::RunReport& report,
                        const std::vector<Attempts>* attempts) {
  size_t skipped = 0;
  absl::Duration total;
  for (const parallel::StepReport& step : report.steps) {
    if (step.outcome != parallel::StepOutcome::kSucceeded &&
        step.outcome != parallel::StepOutcome::kFailed) {
      ++skipped;
    }
    total += step.duration;
  }
  std::string out = absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<testsuite name=\"parallel_steps\" tests=\"%d\" failures=\"%d\" "
      "errors=\"0\" skipped=\"%d\" time=\"%.3f\">\n",
      report.steps.size(), report.failed_count(), skipped,
      absl::ToDoubleSeconds(total));
  for (size_t i = 0; i < report.steps.size(); ++i) {
    const parallel::StepReport& step = report.steps[i];
    absl::StrAppendFormat(
        &out,
        "  <testcase classname=\"parallel_steps\" name=\"%s\" "
        "time=\"%.3f\">",
        parallel::XmlText(step.name, true), absl::ToDoubleSeconds(step.duration));
    if (attempts != nullptr && i < attempts->size() &&
        (*attempts)[i].flaky() &&
        step.outcome == parallel::StepOutcome::kSucceeded) {
      const Attempts& tries = (*attempts)[i];
      absl::StrAppend(&out, "\n    <flakyFailure message=\"",
                      parallel::XmlText(tries.first_failure->ToString(), true),
                      "\" type=\"",
                      parallel::XmlText(tries.first_failure->type, true),
                      "\"><system-out>", parallel::XmlText(tries.first_tail),
                      "</system-out></flakyFailure>\n  ");
    }
    if (step.outcome == parallel::StepOutcome::kFailed) {
      const std::string message =
          step.error.has_value() ? step.error->ToString() : DescribeEnd(step);
      absl::StrAppend(&out, "\n    <failure message=\"", parallel::XmlText(message, true),
                      "\">", parallel::XmlText(step.output_tail), "</failure>\n  ");
    } else if (step.outcome != parallel::StepOutcome::kSucceeded) {
      absl::StrAppend(&out, "<skipped message=\"", StatusWord(step), "\"/>");
    }
    out += "</testcase>\n";
  }
  return out + "</testsuite>\n";
}

absl::Status WriteTimelineReport(const parallel::RunReport& report,
                                 const std::string& path) {
  return parallel::WriteFileAtomically(path, parallel::TimelineHtml(report));
}

std::string RunSummaryLine(const parallel::RunReport& report,
                           absl::string_view noun) {
  const parallel::RunTimes times = parallel::SummarizeTimes(report);
  std::string line = absl::StrFormat(
      "%d %s in %.1f s, parallelism %.1f of %d", report.steps.size(), noun,
      absl::ToDoubleSeconds(times.wall), times.parallelism, times.slots);
  if (times.longest < report.steps.size()) {
    const parallel::StepReport& step = report.steps[times.longest];
    std::string name = step.name;
    std::replace(name.begin(), name.end(), '\n', ' ');
    if (name.size() > 60) {
      name = absl::StrCat(parallel::Utf8Prefix(name, 57), "...");
    }
    absl::StrAppendFormat(&line, ", longest: %s %.1f s", name,
                          absl::ToDoubleSeconds(step.duration));
  }
  return line;
}

absl::Status WriteJsonReport(const parallel::RunReport& report,
                             const std::string& path,
                             const std::vector<Attempts>* attempts) {
  return parallel::WriteFileAtomically(path, JsonReport(report, attempts));
}

absl::Status WriteJunitReport(const parallel::RunReport& report,
                              const std::string& path,
                              const std::vector<Attempts>* attempts) {
  return parallel::WriteFileAtomically(path, JunitReport(report, attempts));
}

}  // namespace tools
