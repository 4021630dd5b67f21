// GNU parallel's --joblog: a tab-separated line per job (Seq, Host,
// Starttime, JobRuntime, Send, Receive, Exitval, Signal, Command) under a
// header line, and --resume / --resume-failed, which read it back.
//
// Thread-safety: thread-safe (no state).

#ifndef TOOLS_JOBLOG_H_
#define TOOLS_JOBLOG_H_

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/step.h"

namespace tools {

inline constexpr char kJoblogHeader[] =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\t"
    "Command\n";

// The lines of the jobs that started, in `report`'s order; `seqs[i]` is
// report.steps[i]'s job number (1-based, in the whole list of commands).
// Host is ":" (this machine), Send 0, Receive the output bytes; a command
// is written on one line (newlines become spaces).
std::string JoblogLines(const parallel::RunReport& report,
                        const std::vector<size_t>& seqs);

struct JoblogEntry {
  int exit_value = 0;
  int signal = 0;
  bool succeeded() const { return exit_value == 0 && signal == 0; }
};

// The jobs a joblog records, by Seq (a later line for the same Seq wins).
// A missing file is an empty log; a line that is not a job line (the
// header, garbage) is skipped.
absl::StatusOr<std::map<size_t, JoblogEntry>> ReadJoblog(
    const std::string& path);

}  // namespace tools

#endif  // TOOLS_JOBLOG_H_
