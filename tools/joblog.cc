#include "tools/joblog.h"

#include <cerrno>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace tools {

std::string JoblogLines(const parallel::RunReport& report,
                        const std::vector<size_t>& seqs) {
  std::string out;
  for (size_t i = 0; i < report.steps.size() && i < seqs.size(); ++i) {
    const parallel::StepReport& step = report.steps[i];
    if (!step.started) continue;
    std::string command = step.name;
    for (char& c : command) {
      if (c == '\n' || c == '\t') c = ' ';
    }
    absl::StrAppendFormat(
        &out, "%d\t:\t%.3f\t%.3f\t0\t%d\t%d\t%d\t%s\n", seqs[i],
        absl::ToDoubleSeconds(step.start_time - absl::UnixEpoch()),
        absl::ToDoubleSeconds(step.duration), step.output_bytes,
        step.exit_code < 0 ? -1 : step.exit_code, step.signal, command);
  }
  return out;
}

absl::StatusOr<std::map<size_t, JoblogEntry>> ReadJoblog(
    const std::string& path) {
  std::map<size_t, JoblogEntry> jobs;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return jobs;
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot read '", path, "'"));
  }
  std::string line;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, '\t');
    size_t seq = 0;
    JoblogEntry entry;
    if (fields.size() < 9 || !absl::SimpleAtoi(fields[0], &seq) ||
        !absl::SimpleAtoi(fields[6], &entry.exit_value) ||
        !absl::SimpleAtoi(fields[7], &entry.signal)) {
      continue;
    }
    jobs[seq] = entry;
  }
  if (in.bad()) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot read '", path, "'"));
  }
  return jobs;
}

}  // namespace tools
