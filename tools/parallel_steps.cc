// parallel_steps: run shell commands as parallel steps, with grouped, in-order
// output (the earliest unfinished command streamed live), a failure summary,
// and JSON / JUnit reports for CI.
//
//   parallel_steps [flags] -- 'make -C a' 'make -C b' './run_tests.sh'
//   generate_commands | parallel_steps -j 4 --junit=report.xml
//
// Exit code: 0 if every command passed; otherwise the number of failed
// commands, at most 101 (GNU parallel's convention); the tool dies of SIGINT /
// SIGTERM / SIGHUP / SIGQUIT when interrupted (a shell sees 130 / 143 / 129 /
// 131) after
// killing the commands and replaying their output so far; 255 on bad usage,
// with a one-line error.
//
// Flags are parsed by hand (parallel_steps_args.h) rather than with Abseil
// flags because absl's parser exits with status 1 on a bad flag, and this
// tool's contract is 255.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "parallel/parallel.h"
#include "parallel/report_text.h"
#include "tools/jobserver.h"
#include "tools/joblog.h"
#include "tools/parallel_steps_args.h"
#include "tools/reports.h"
#include "tools/status_line.h"

namespace {

using tools::Flags;
using tools::kUsageError;
using tools::StatusLine;
using tools::UsageError;

constexpr int kMaxFailureExit = 101;
// Failures the summary shows in full.
constexpr size_t kMaxSummarized = 20;
// As a shell reports death by SIGPIPE.
constexpr int kBrokenPipeExit = 128 + SIGPIPE;

// The terminal of --tty, closed at the end.
struct UniqueTerminal {
  int fd = -1;
  ~UniqueTerminal() {
    if (fd >= 0) ::close(fd);
  }
};

// A command as the summary shows it: on one line, and cut (on a UTF-8
// character boundary) when long — the reports keep it whole.
std::string SummaryName(const std::string& name) {
  constexpr size_t kMaxShown = 200;
  std::string shown = name;
  std::replace(shown.begin(), shown.end(), '\n', ' ');
  if (shown.size() <= kMaxShown) return shown;
  return absl::StrCat(parallel::Utf8Prefix(shown, kMaxShown - 3), "... (", name.size(),
                      " bytes)");
}

// "0ms" rather than absl's bare "0" for a command that took no time.
std::string SummaryDuration(absl::Duration duration) {
  duration = absl::Trunc(duration, absl::Milliseconds(1));
  return duration == absl::ZeroDuration() ? "0ms"
                                          : absl::FormatDuration(duration);
}

void PrintSummary(const parallel::RunReport& report) {
  const size_t failed = report.failed_count();
  if (failed == 0) return;
  std::string text = absl::StrCat("\nparallel_steps: ", failed, " of ",
                                  report.steps.size(), " commands failed:\n");
  size_t shown = 0;
  for (const parallel::StepReport& step : report.steps) {
    if (step.outcome != parallel::StepOutcome::kFailed) continue;
    if (++shown > kMaxSummarized) {
      absl::StrAppend(&text, "  ... and ", failed - kMaxSummarized,
                      " more (all of them are in --json / --junit)\n");
      break;
    }
    absl::StrAppend(&text, "  FAILED ", SummaryName(step.name), "  (",
                    tools::DescribeEnd(step), ", ",
                    SummaryDuration(step.duration), ")\n");
    std::vector<absl::string_view> lines =
        absl::StrSplit(absl::StripSuffix(step.output_tail, "\n"), '\n');
    const size_t first = lines.size() > 5 ? lines.size() - 5 : 0;
    for (size_t i = first; i < lines.size(); ++i) {
      if (!lines[i].empty()) absl::StrAppend(&text, "    | ", lines[i], "\n");
    }
  }
  std::cerr << text;
}

// A report file must be writable before anything runs: its directory exists
// and takes files.
void CheckReportPath(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (::access(dir.c_str(), W_OK) != 0) {
    UsageError(absl::StrCat("--", flag, "=", path, ": cannot write in '", dir,
                            "': ", std::strerror(errno)));
  }
}

// Under make -jN without an explicit -j, make's jobserver decides.
std::unique_ptr<tools::JobserverClient> MakeJobserver(const Flags& flags) {
  const char* makeflags = std::getenv("MAKEFLAGS");
  if (makeflags == nullptr || flags.jobs_given) return nullptr;
  absl::StatusOr<std::unique_ptr<tools::JobserverClient>> client =
      tools::JobserverClient::FromMakeflags(makeflags);
  if (!client.ok()) {
    std::cerr << "parallel_steps: " << client.status().message()
              << "; running with -j " << flags.jobs << "\n";
    return nullptr;
  }
  return *std::move(client);
}

// Writes --json and --junit; false (with a message) if one failed.
// Every command's last attempt (`report`), with how many it took, and every
// attempt of all (`every`, with each one's job number): the reports, the
// trace, the timeline and the job log. False if one could not be written.
bool WriteReports(const Flags& flags, const parallel::RunReport& report,
                  const std::vector<tools::Attempts>& attempts,
                  const parallel::RunReport& every,
                  const std::vector<size_t>& every_seq,
                  const std::string& joblog_before) {
  std::vector<std::pair<std::string, absl::Status>> written;
  auto write = [&](const std::string& path, auto make) {
    if (!path.empty()) written.emplace_back(path, make());
  };
  write(flags.json,
        [&] { return tools::WriteJsonReport(report, flags.json, &attempts); });
  write(flags.junit,
        [&] { return tools::WriteJunitReport(report, flags.junit, &attempts); });
  write(flags.timeline,
        [&] { return tools::WriteTimelineReport(every, flags.timeline); });
  write(flags.trace, [&] {
    return parallel::WriteFileAtomically(flags.trace,
                                         parallel::ChromeTraceJson(every));
  });
  write(flags.joblog, [&] {
    return parallel::WriteFileAtomically(
        flags.joblog,
        (joblog_before.empty() ? tools::kJoblogHeader : joblog_before) +
            tools::JoblogLines(every, every_seq));
  });
  bool ok = true;
  for (const auto& [path, status] : written) {
    if (status.ok()) continue;
    std::cerr << "parallel_steps: " << status.message() << "\n";
    ok = false;
  }
  return ok;
}

// The commands that failed and then passed on a retry.
void PrintFlaky(const parallel::RunReport& report,
                const std::vector<tools::Attempts>& attempts) {
  std::string text;
  size_t flaky = 0;
  for (size_t i = 0; i < report.steps.size(); ++i) {
    if (!attempts[i].flaky()) continue;
    ++flaky;
    absl::StrAppend(&text, "  FLAKY ", SummaryName(report.steps[i].name),
                    "  (passed on attempt ", attempts[i].count, "; first: ",
                    attempts[i].first_failure->message, ")\n");
  }
  if (flaky == 0) return;
  std::cerr << "parallel_steps: " << flaky << " of " << report.steps.size()
            << " commands were flaky (failed, then passed on a retry):\n"
            << text;
}

// --results=DIR: DIR exists (made if missing, with its parents) and takes
// files before anything runs.
void MakeResultsDir(const std::string& dir) {
  if (dir.empty()) return;
  std::string path;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    absl::StrAppend(&path, part, "/");
    if (part.empty() || part == ".") continue;
    if (::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST) {
      UsageError(absl::StrCat("--results=", dir, ": cannot create '", path,
                              "': ", std::strerror(errno)));
    }
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    UsageError(absl::StrCat("--results=", dir, ": cannot write in it: ",
                            std::strerror(errno)));
  }
}

// --results: DIR/SEQ, made with its cmd file as the command starts ("" if
// that fails: the step then fails as its output files cannot be created
// there either, with a message naming them).
std::string ResultsDirFor(const std::string& dir, size_t seq,
                          const std::string& command) {
  const std::string path = absl::StrCat(dir, "/", seq);
  if (::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST) return path;
  std::ofstream cmd(path + "/cmd", std::ios::trunc);
  cmd << command << "\n";
  return path;
}

// Whether --halt fired, and on which command's end.
struct HaltState {
  bool fired = false;
  parallel::StepReport trigger;
};

// The status line's observers (when shown), the jobserver, --tag,
// --line-buffer and --results (`seqs` and `commands`: this run's steps' job
// numbers and command lines).
parallel::RunHooks MakeHooks(const Flags& flags, parallel::Throttle* jobserver,
                             StatusLine* status,
                             std::vector<size_t> seqs,
                             std::vector<std::string> commands,
                             std::vector<std::string> tags, HaltState* halt,
                             bool retried_if_failed) {
  parallel::RunHooks hooks;
  hooks.throttle = jobserver;
  hooks.tag_lines = flags.tag;
  hooks.line_tags = std::move(tags);
  hooks.line_buffer = flags.line_buffer;
  if (!flags.results.empty()) {
    hooks.results_dir = [&flags, seqs = std::move(seqs),
                         commands = std::move(commands)](size_t index) {
      return ResultsDirFor(flags.results, seqs[index], commands[index]);
    };
  }
  if (flags.halt_when != parallel::RunHooks::Halt::kNo) {
    // --halt: once enough commands failed (or passed), of all of them.
    const double needed =
        flags.halt_percent
            ? std::ceil(flags.halt_count * flags.commands.size() / 100.0)
            : flags.halt_count;
    hooks.should_halt = [&flags, needed, halt,
                         seen = std::make_shared<size_t>(0)](
                            size_t, const parallel::StepReport& step) {
      const bool counts =
          flags.halt_on_success
              ? step.outcome == parallel::StepOutcome::kSucceeded
              : step.outcome == parallel::StepOutcome::kFailed;
      if (counts && ++*seen >= needed) {
        if (!halt->fired) *halt = HaltState{true, step};
        return flags.halt_when;
      }
      return parallel::RunHooks::Halt::kNo;
    };
  }
  if (retried_if_failed) {
    // --retries: GNU parallel shows only a command's last attempt.
    hooks.replay_output = [](size_t, const parallel::StepReport& step) {
      return step.outcome != parallel::StepOutcome::kFailed;
    };
  }
  const bool progress =
      flags.progress == 1 || (flags.progress == -1 && ::isatty(STDERR_FILENO));
  if (!progress) return hooks;
  hooks.on_start = [status](size_t index) { status->Started(index); };
  hooks.on_end = [status](size_t index, const parallel::StepReport&) {
    status->Ended(index);
  };
  hooks.on_stopped = [status](size_t index, bool stopped) {
    status->Stopped(index, stopped);
  };
  hooks.before_output = [status] { status->Erase(); };
  return hooks;
}

}  // namespace

int main(int argc, char** argv) {
  struct sigaction pipe_action;
  const bool sigpipe_ignored =
      ::sigaction(SIGPIPE, nullptr, &pipe_action) == 0 &&
      pipe_action.sa_handler == SIG_IGN;
  Flags flags = tools::ParseFlags(argc, argv);
  CheckReportPath("json", flags.json);
  CheckReportPath("junit", flags.junit);
  CheckReportPath("trace", flags.trace);
  CheckReportPath("timeline", flags.timeline);
  CheckReportPath("joblog", flags.joblog);
  if (!flags.dry_run) MakeResultsDir(flags.results);
  if ((flags.resume || flags.resume_failed) && flags.joblog.empty()) {
    UsageError("--resume and --resume-failed need --joblog=FILE");
  }
  tools::FillCommands(&flags);

  // Each command's job number (1-based) in the whole list; --resume skips
  // some of them.
  std::vector<size_t> seqs;
  std::string joblog_before;  // kept when resuming: new lines are appended
  {
    std::map<size_t, tools::JoblogEntry> done;
    if (flags.resume || flags.resume_failed) {
      absl::StatusOr<std::map<size_t, tools::JoblogEntry>> log =
          tools::ReadJoblog(flags.joblog);
      if (!log.ok()) UsageError(std::string(log.status().message()));
      done = *std::move(log);
      std::ifstream in(flags.joblog);
      joblog_before.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::vector<std::string> left;
    std::vector<std::string> left_tags;
    for (size_t i = 0; i < flags.commands.size(); ++i) {
      const auto it = done.find(i + 1);
      if (it != done.end() && (flags.resume || it->second.succeeded())) {
        continue;
      }
      seqs.push_back(i + 1);
      left.push_back(std::move(flags.commands[i]));
      if (i < flags.tags.size()) left_tags.push_back(std::move(flags.tags[i]));
    }
    flags.commands = std::move(left);
    flags.tags = std::move(left_tags);
  }
  if (flags.dry_run) {
    for (const std::string& command : flags.commands) std::cout << command << "\n";
    return std::cout.flush() ? 0 : 1;
  }
  std::vector<parallel::Step> steps;
  steps.reserve(flags.commands.size());
  for (const std::string& command : flags.commands) {
    steps.push_back(parallel::Step::Shell(command));
  }
  // --tty: one command at a time has the terminal.
  UniqueTerminal terminal;
  if (flags.tty) {
    if (flags.jobs_given && flags.jobs != 1) {
      UsageError("--tty runs one command at a time: it cannot go with -j " +
                 std::to_string(flags.jobs));
    }
    flags.jobs = 1;
    flags.jobs_given = true;  // not make's jobserver either
    terminal.fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (terminal.fd < 0) {
      UsageError(absl::StrCat("--tty: cannot open the terminal /dev/tty: ",
                              std::strerror(errno)));
    }
  }
  if (flags.slurm_args_given && !flags.slurm) {
    UsageError("--slurm-args and --slurm-alloc-args need --slurm");
  }
  if (flags.slurm && flags.tty) {
    UsageError("--tty cannot go with --slurm: the commands run on cluster nodes");
  }
  std::unique_ptr<tools::JobserverClient> jobserver = MakeJobserver(flags);

  parallel::ParallelOptions options;
  options.max_parallel = jobserver != nullptr ? 0 : flags.jobs;
  options.halt_on_error = flags.halt_on_error;
  options.timeout = flags.timeout;
  options.silent_timeout = flags.silent_timeout;
  options.combine_stderr = false;  // stdout to stdout, stderr to stderr
  options.output_fd = STDOUT_FILENO;
  options.error_fd = STDERR_FILENO;
  options.temp_dir = flags.temp_dir;
  if (flags.slurm) {
    parallel::SlurmOptions slurm;
    slurm.srun_args = flags.slurm_args;
    slurm.salloc_args = flags.slurm_alloc_args;
    slurm.message_fd = STDERR_FILENO;
    options.launcher = parallel::SlurmLauncher(std::move(slurm));
    // One allocation for the whole run, sized to -j (the jobserver does not
    // reach the cluster).
    options.max_parallel = flags.jobs;
  }
  // The trace is written with the reports, from every attempt.

  StatusLine status(flags.commands);
  HaltState halt;
  parallel::RunHooks hooks =
      MakeHooks(flags, jobserver.get(), &status, seqs, flags.commands,
                flags.tags, &halt, flags.retries > 0);
  hooks.terminal_fd = terminal.fd;
  absl::StatusOr<parallel::RunReport> report =
      parallel::RunSteps(std::move(steps), options, hooks);
  status.Erase();
  if (!report.ok()) {
    std::cerr << "parallel_steps: " << report.status().message() << "\n";
    return kUsageError;
  }
  // --retries: the failed commands again, round by round.
  std::vector<tools::Attempts> attempts(report->steps.size());
  parallel::RunReport every = *report;
  std::vector<size_t> every_seq = seqs;
  for (int round = 0; round < flags.retries && report->interrupt_signal == 0 &&
                      !report->output_error;
       ++round) {
    std::vector<size_t> again;
    std::vector<size_t> again_seqs;
    std::vector<std::string> again_commands;
    std::vector<std::string> again_tags;
    std::vector<parallel::Step> retry;
    for (size_t i = 0; i < report->steps.size(); ++i) {
      if (report->steps[i].outcome != parallel::StepOutcome::kFailed) continue;
      again.push_back(i);
      again_seqs.push_back(seqs[i]);
      if (i < flags.tags.size()) again_tags.push_back(flags.tags[i]);
      again_commands.push_back(flags.commands[i]);
      retry.push_back(parallel::Step::Shell(flags.commands[i]));
    }
    if (again.empty()) break;
    StatusLine retry_status(again_commands);
    absl::StatusOr<parallel::RunReport> rerun = parallel::RunSteps(
        std::move(retry), options,
        MakeHooks(flags, jobserver.get(), &retry_status, again_seqs,
                  again_commands, again_tags, &halt,
                  round + 1 < flags.retries));
    retry_status.Erase();
    if (!rerun.ok()) {
      std::cerr << "parallel_steps: " << rerun.status().message() << "\n";
      return kUsageError;
    }
    for (size_t k = 0; k < again.size(); ++k) {
      parallel::StepReport& last = report->steps[again[k]];
      tools::Attempts& tries = attempts[again[k]];
      if (!tries.first_failure) {
        tries.first_failure = last.error;
        tries.first_tail = last.output_tail;
      }
      ++tries.count;
      last = rerun->steps[k];
      every.steps.push_back(rerun->steps[k]);
      every_seq.push_back(seqs[again[k]]);
    }
    report->interrupt_signal = rerun->interrupt_signal;
    report->output_error = rerun->output_error;
    report->output_errno = rerun->output_errno;
    every.end_time = rerun->end_time;
  }
  for (size_t i = 0; i < attempts.size(); ++i) {  // flaky: it passed at last
    if (report->steps[i].outcome != parallel::StepOutcome::kSucceeded) {
      attempts[i].first_failure.reset();
    }
  }
  jobserver.reset();  // every token back to make, whatever happened
  if (status.ever_shown()) {
    // Where the time went, in one line, where the status line was.
    std::cerr << tools::RunSummaryLine(*report) << "\n";
  }
  PrintSummary(*report);
  PrintFlaky(*report, attempts);
  const bool reports_written = WriteReports(flags, *report, attempts, every,
                                            every_seq, joblog_before);
  if (report->interrupt_signal != 0) {
    std::fflush(nullptr);
    signal(report->interrupt_signal, SIG_DFL);
    raise(report->interrupt_signal);
    return 128 + report->interrupt_signal;
  }
  size_t failed = report->failed_count();
  if (!reports_written) ++failed;  // CI must not read a pass it cannot see
  // --halt's exit status, as GNU parallel's: 0 when it fired on success;
  // the failing command's own status when it fired on fail=1.
  const bool halt_status = halt.fired && reports_written && !report->output_error;
  if (halt_status && flags.halt_on_success) return 0;
  if (halt_status && flags.halt_count == 1 && !flags.halt_percent) {
    const parallel::StepReport& step = halt.trigger;
    if (step.signal != 0) return 128 + step.signal;
    if (step.exit_code > 0) return std::min(step.exit_code, 255);
  }
  if (report->output_error) {
    // The reader went away (`| head`): end as a filter does, by SIGPIPE —
    // unless SIGPIPE was ignored when we started, then say so and exit 141.
    if (report->output_errno == EPIPE) {
      if (!sigpipe_ignored) {
        signal(SIGPIPE, SIG_DFL);
        raise(SIGPIPE);
      }
      std::cerr << "parallel_steps: " << report->output_error->message << "\n";
      return kBrokenPipeExit;
    }
    std::cerr << "parallel_steps: " << report->output_error->message << "\n";
    ++failed;  // the run's own failure to deliver its output
  }
  return failed > kMaxFailureExit ? kMaxFailureExit : static_cast<int>(failed);
}
