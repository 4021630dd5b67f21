#include "parallel/trace.h"

#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "parallel/failure.h"
#include "parallel/report_text.h"

namespace parallel {
namespace {

bool Started(const StepReport& step) {
  return step.slot >= 0 && step.start_time != absl::InfinitePast();
}

// The run's start and end: the report's own, or its units' extremes.
std::pair<absl::Time, absl::Time> Span(const RunReport& report) {
  absl::Time start = report.start_time;
  absl::Time end = report.end_time;
  for (const StepReport& step : report.steps) {
    if (!Started(step)) continue;
    if (start == absl::InfinitePast() || step.start_time < start) {
      start = step.start_time;
    }
    end = std::max(end, step.start_time + step.duration);
  }
  if (start == absl::InfinitePast()) start = end = absl::UnixEpoch();
  return {start, std::max(start, end)};
}

const char* StatusName(const StepReport& step) {
  switch (step.outcome) {
    case StepOutcome::kSucceeded:
      return "succeeded";
    case StepOutcome::kFailed:
      return "failed";
    case StepOutcome::kHalted:
      return "halted";
    case StepOutcome::kInterrupted:
      return "interrupted";
  }
  return "unknown";
}

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

// Changes of the running and queued counts, by time.
struct Change {
  absl::Time at;
  int running = 0;
  int queued = 0;
};
std::vector<Change> Changes(const RunReport& report, absl::Time end) {
  std::vector<Change> changes;
  for (const StepReport& step : report.steps) {
    const absl::Time queued =
        step.queued_time != absl::InfinitePast() ? step.queued_time
                                                 : report.start_time;
    if (Started(step)) {
      if (queued != absl::InfinitePast() && queued < step.start_time) {
        changes.push_back({queued, 0, +1});
        changes.push_back({step.start_time, 0, -1});
      }
      changes.push_back({step.start_time, +1, 0});
      changes.push_back({step.start_time + step.duration, -1, 0});
    } else if (queued != absl::InfinitePast() && queued < end) {
      changes.push_back({queued, 0, +1});
      changes.push_back({end, 0, -1});
    }
  }
  std::stable_sort(changes.begin(), changes.end(),
                   [](const Change& a, const Change& b) { return a.at < b.at; });
  return changes;
}

std::string Seconds(absl::Duration d) {
  return absl::StrFormat("%.2f s", absl::ToDoubleSeconds(d));
}

}  // namespace

RunTimes SummarizeTimes(const RunReport& report) {
  RunTimes times;
  const auto [start, end] = Span(report);
  times.wall = end - start;
  times.slots = report.slots;
  times.longest = report.steps.size();
  for (size_t i = 0; i < report.steps.size(); ++i) {
    const StepReport& step = report.steps[i];
    if (!Started(step)) continue;
    times.busy += step.duration;
    if (times.longest == report.steps.size() ||
        step.duration > report.steps[times.longest].duration) {
      times.longest = i;
    }
  }
  if (times.wall > absl::ZeroDuration()) {
    times.parallelism = absl::FDivDuration(times.busy, times.wall);
  }
  // Integrate the time with fewer running than slots.
  int running = 0;
  absl::Time last = start;
  for (const Change& change : Changes(report, end)) {
    const absl::Time at = std::clamp(change.at, start, end);
    if (running < report.slots) times.underused += at - last;
    last = at;
    running += change.running;
  }
  if (running < report.slots) times.underused += end - last;
  return times;
}

std::string ChromeTraceJson(const RunReport& report) {
  const auto [start, end] = Span(report);
  const std::string pid = absl::StrCat(::getpid());
  std::vector<std::string> events;
  events.push_back(absl::StrCat(
      R"({"name": "process_name", "ph": "M", "pid": )", pid,
      R"(, "tid": 0, "args": {"name": "parallel run"}})"));
  std::set<int> slots;
  for (const StepReport& step : report.steps) {
    if (Started(step)) slots.insert(step.slot);
  }
  for (int slot : slots) {
    events.push_back(absl::StrCat(
        R"({"name": "thread_name", "ph": "M", "pid": )", pid, R"(, "tid": )",
        slot, R"(, "args": {"name": "slot )", slot, R"("}})"));
  }
  for (const StepReport& step : report.steps) {
    if (!Started(step)) continue;
    std::string args = absl::StrCat(
        R"("status": ")", StatusName(step), R"(", "exit_code": )",
        step.exit_code, R"(, "signal": )", step.signal,
        R"(, "output_bytes": )", step.output_bytes, R"(, "pid": )", step.pid);
    if (step.error) {
      absl::StrAppend(&args, R"(, "failure_type": )",
                      JsonString(step.error->type), R"(, "message": )",
                      JsonString(step.error->message));
    }
    events.push_back(absl::StrCat(
        R"({"name": )", JsonString(step.name),
        R"(, "cat": "unit", "ph": "X", "ts": )", Micros(step.start_time - start),
        R"(, "dur": )", Micros(step.duration), R"(, "pid": )", pid,
        R"(, "tid": )", step.slot, R"(, "args": {)", args, "}}"));
  }
  int running = 0;
  int queued = 0;
  const std::vector<Change> changes = Changes(report, end);
  for (size_t i = 0; i < changes.size(); ++i) {
    running += changes[i].running;
    queued += changes[i].queued;
    if (i + 1 < changes.size() && changes[i + 1].at == changes[i].at) continue;
    events.push_back(absl::StrCat(
        R"({"name": "parallelism", "ph": "C", "ts": )",
        Micros(std::max(changes[i].at, start) - start), R"(, "pid": )", pid,
        R"(, "args": {"running": )", running, R"(, "queued": )", queued, "}}"));
  }
  return absl::StrCat(R"({"displayTimeUnit": "ms", "traceEvents": [)", "\n",
                      absl::StrJoin(events, ",\n"), "\n]}\n");
}

std::string TimelineHtml(const RunReport& report, absl::string_view title) {
  const auto [start, end] = Span(report);
  const RunTimes times = SummarizeTimes(report);
  int lanes = std::max(report.slots, 1);
  for (const StepReport& step : report.steps) {
    if (Started(step)) lanes = std::max(lanes, step.slot + 1);
  }
  constexpr int kLeft = 70, kWidth = 1000, kLane = 24, kTop = 24;
  const double wall = std::max(absl::ToDoubleSeconds(end - start), 1e-6);
  auto x = [&, origin = start](absl::Time t) {  // C++17 cannot capture a binding
    return kLeft + kWidth * absl::ToDoubleSeconds(t - origin) / wall;
  };
  const int height = kTop + lanes * kLane + 8;
  std::string svg = absl::StrFormat(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">)",
      kLeft + kWidth + 40, height);
  for (int i = 0; i <= 10; ++i) {  // the time axis
    const double at = kLeft + kWidth * i / 10.0;
    absl::StrAppendFormat(
        &svg,
        R"(<line class="tick" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>)"
        R"(<text class="axis" x="%.1f" y="14">%.2fs</text>)",
        at, kTop - 4, at, height - 4, at - 10, wall * i / 10.0);
  }
  for (int lane = 0; lane < lanes; ++lane) {
    absl::StrAppendFormat(&svg,
                          R"(<text class="lane" x="4" y="%d">slot %d</text>)",
                          kTop + lane * kLane + 16, lane);
  }
  for (const StepReport& step : report.steps) {
    if (!Started(step)) continue;
    const double left = x(step.start_time);
    const double width = std::max(x(step.start_time + step.duration) - left, 1.0);
    const char* kind =
        step.outcome == StepOutcome::kSucceeded ? "ok" : "failed";
    absl::StrAppendFormat(
        &svg,
        R"(<rect class="bar %s" x="%.1f" y="%d" width="%.1f" height="%d">)"
        "<title>%s</title></rect>",
        kind, left, kTop + step.slot * kLane + 2, width, kLane - 4,
        XmlText(absl::StrCat(step.name, " \xe2\x80\x94 ",
                             Seconds(step.duration), " \xe2\x80\x94 ",
                             StatusName(step),
                             step.error ? absl::StrCat(": ", step.error->message)
                                        : "")));
  }
  svg += "</svg>";
  std::string longest = "none";
  if (times.longest < report.steps.size()) {
    const StepReport& step = report.steps[times.longest];
    longest = absl::StrCat(XmlText(step.name), " ", Seconds(step.duration));
  }
  const std::string header = absl::StrFormat(
      "wall %s &middot; sum of step times %s &middot; parallelism %.2f of %d "
      "&middot; longest: %s &middot; fewer than %d busy for %s",
      Seconds(times.wall), Seconds(times.busy), times.parallelism,
      times.slots, longest, times.slots, Seconds(times.underused));
  return absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>",
      XmlText(title),
      "</title>\n<style>body{font:13px sans-serif;margin:12px}"
      ".bar{stroke:#fff;stroke-width:1}"
      ".bar.ok{fill:#4a90d9}.bar.failed{fill:#d9383a}"
      ".tick{stroke:#ddd}.axis,.lane{font:11px sans-serif;fill:#555}"
      "</style></head>\n<body><h1>",
      XmlText(title), "</h1>\n<p class=\"summary\">", header, "</p>\n", svg,
      "\n</body></html>\n");
}

namespace internal {

void WriteTraceFile(const std::string& path, RunReport* report) {
  if (path.empty()) return;
  const absl::Status status =
      WriteFileAtomically(path, ChromeTraceJson(*report));
  if (status.ok() || report->output_error) return;
  report->output_errno = EIO;  // the status names the real one
  report->output_error = ExceptionInfo{std::string(kOutputLost),
                                       absl::StrCat("could not write the trace ",
                                                    status.message()),
                                       "", "run", 0};
}

}  // namespace internal
}  // namespace parallel
