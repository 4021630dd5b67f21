// parallel/trace.h — where the time of a run went: a Chrome trace-event
// JSON file (Perfetto, chrome://tracing) and a self-contained HTML timeline,
// both from a RunReport (its start and end times, and each unit's queued
// time, start, duration and slot).
//
//   parallel::ParallelOptions options;
//   options.trace_file = "run.trace.json";       // written at the run's end
//   ...
//   parallel::WriteFileAtomically("run.html", parallel::TimelineHtml(report));
//
// The trace follows the Trace Event Format's JSON object form: one complete
// event ("ph": "X", "ts" and "dur" in microseconds from the run's start) per
// unit that started, "tid" its slot (a lane per slot, named by "thread_name"
// metadata events), "pid" the caller's process id, and "args" with the
// status, exit code, signal, output bytes, the unit's process id and, for a
// failure, its type and message; counter events ("ph": "C") named
// "parallelism" with the running and queued counts at every change.
//
// Thread-safety: thread-safe (no state).

#ifndef PARALLEL_TRACE_H_
#define PARALLEL_TRACE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallel/step.h"

namespace parallel {

// The figures a timeline's header shows.
struct RunTimes {
  absl::Duration wall;       // the run's end - its start
  absl::Duration busy;       // the sum of the units' durations
  double parallelism = 0;    // busy / wall
  int slots = 0;             // report.slots
  // The longest unit (index into report.steps), or report.steps.size().
  size_t longest = 0;
  // Time during which fewer units ran than there were slots, while some
  // were still to come or running (an idle tail counts: that is what a
  // longest-first order shortens).
  absl::Duration underused;
};
RunTimes SummarizeTimes(const RunReport& report);

// The trace-event JSON of the run (see above).
std::string ChromeTraceJson(const RunReport& report);

// One HTML file with an inline SVG (no scripts, fonts or links): a lane per
// slot, a bar per unit that started (failed ones red) with a hover title
// (name, duration, status), and a header line with the RunTimes figures.
// `title` heads the page.
std::string TimelineHtml(const RunReport& report,
                         absl::string_view title = "parallel run");

namespace internal {

// The end of a run with ProcessOptions::trace_file set (nothing if `path`
// is empty): writes the trace atomically; a failure becomes
// report->output_error (parallel::OutputLost) unless one is there already.
void WriteTraceFile(const std::string& path, RunReport* report);

}  // namespace internal

}  // namespace parallel

#endif  // PARALLEL_TRACE_H_
