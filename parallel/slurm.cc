#include "parallel/slurm.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "parallel/failure.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/process_exit.h"
#include "parallel/run_steps.h"

namespace parallel {
namespace {

// What a Slurm client program printed and how it ended.
struct Ran {
  StepReport report;
  std::string output;  // stdout and stderr, in the order written
};

// Runs a Slurm client program to its end, with the library itself (so an
// interrupt kills it cleanly); the output is kept, not shown.
absl::StatusOr<Ran> RunClient(std::vector<std::string> argv,
                              absl::Duration timeout,
                              int* interrupted_by = nullptr) {
  internal::UniqueFd out(::memfd_create("parallel-slurm", MFD_CLOEXEC));
  if (!out.valid()) return internal::ErrnoStatus("memfd_create");
  ParallelOptions options;
  options.output_fd = out.get();
  options.combine_stderr = true;
  options.timeout = timeout;
  std::vector<Step> steps;
  steps.push_back(Step::Command(std::move(argv)));
  absl::StatusOr<RunReport> report = RunSteps(std::move(steps), options);
  if (!report.ok()) return report.status();
  Ran ran;
  ran.report = std::move(report->steps[0]);
  const off_t size = ::lseek(out.get(), 0, SEEK_END);
  if (size > 0) {
    ran.output.resize(static_cast<size_t>(size));
    const ssize_t n = ::pread(out.get(), ran.output.data(), ran.output.size(), 0);
    ran.output.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  if (report->interrupt_signal != 0) {
    if (interrupted_by != nullptr) *interrupted_by = report->interrupt_signal;
    return absl::CancelledError(absl::StrCat(
        "interrupted by ", internal::SignalName(report->interrupt_signal)));
  }
  return ran;
}

// The last non-empty line of `text`, without a trailing newline.
std::string LastLine(absl::string_view text) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(text, '\n', absl::SkipWhitespace());
  return lines.empty() ? "" : std::string(absl::StripAsciiWhitespace(lines.back()));
}

// Whether `program` can be executed: a path, or found in $PATH.
bool Executable(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    return ::access(program.c_str(), X_OK) == 0;
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    const std::string candidate =
        absl::StrCat(dir.empty() ? "." : dir, "/", program);
    if (::access(candidate.c_str(), X_OK) == 0) return true;
  }
  return false;
}

class Slurm : public CommandLauncher {
 public:
  explicit Slurm(SlurmOptions options) : options_(std::move(options)) {}

  absl::Status Begin(int parallelism, int* interrupt_signal) override {
    static std::atomic<int> runs{0};
    run_name_ = absl::StrCat("parallel-", ::getpid(), "-", runs++);
    own_allocation_ = false;
    job_id_.clear();
    interrupted_by_ = 0;
    if (!Executable(options_.srun)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Slurm: '", options_.srun,
          "' is not found in PATH (install the Slurm client, slurm-client)"));
    }
    const char* job = std::getenv("SLURM_JOB_ID");
    if (job != nullptr && *job != '\0') {
      job_id_ = job;  // inside an allocation: use it
      return absl::OkStatus();
    }
    // First without waiting: a cluster that cannot grant it at once gets
    // one line on message_fd saying why, then the real wait.
    absl::StatusOr<Ran> ran = Salloc(parallelism, /*immediate=*/true);
    if (ran.ok() && ran->report.outcome != StepOutcome::kSucceeded &&
        MustWait(ran->output)) {
      if (options_.message_fd >= 0) {
        const std::string line = absl::StrCat(
            "parallel: waiting for a Slurm allocation of ", parallelism,
            " tasks (", WaitReason(ran->output), ")\n");
        (void)!::write(options_.message_fd, line.data(), line.size());
      }
      ran = Salloc(parallelism, /*immediate=*/false);
    }
    if (!ran.ok() || ran->report.outcome != StepOutcome::kSucceeded) {
      // It may have been granted just as it was stopped.
      CancelByName();
      if (!ran.ok() && absl::IsCancelled(ran.status())) {
        *interrupt_signal = interrupted_by_;
      }
      const std::string why =
          !ran.ok() ? std::string(ran.status().message())
          : !ran->output.empty()
              ? LastLine(ran->output)
              : ran->report.error ? ran->report.error->message : "no output";
      return absl::UnavailableError(
          absl::StrCat("Slurm: salloc could not get an allocation of ",
                       parallelism, " tasks: ", why));
    }
    // "salloc: Granted job allocation 12"
    constexpr absl::string_view kGranted = "Granted job allocation ";
    const size_t at = absl::string_view(ran->output).find(kGranted);
    if (at != std::string::npos) {
      absl::string_view rest =
          absl::string_view(ran->output).substr(at + kGranted.size());
      job_id_ = std::string(rest.substr(0, rest.find_first_not_of("0123456789")));
    }
    if (job_id_.empty()) {
      CancelByName();
      return absl::UnavailableError(absl::StrCat(
          "Slurm: salloc did not name the allocation it made: ",
          LastLine(ran->output)));
    }
    own_allocation_ = true;
    return absl::OkStatus();
  }

  std::vector<std::string> Wrap(size_t index,
                                const std::vector<std::string>& argv) override {
    std::vector<std::string> wrapped = {
        options_.srun,
        "--quiet",
        "--exclusive",
        "--nodes=1",
        "--ntasks=1",
        absl::StrCat("--job-name=", run_name_, ".", index),
        absl::StrCat("--jobid=", job_id_)};
    wrapped.insert(wrapped.end(), options_.srun_args.begin(),
                   options_.srun_args.end());
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
  }

  void Interpret(size_t, StepReport* report) override {
    if (!report->error || report->error->type != kProcessUnexpectedExit ||
        report->exit_code <= 0) {
      return;  // passed, timed out, halted, interrupted: as reported
    }
    // srun's own lines are at the end of its stderr.
    std::string task_line;  // "srun: error: n1: task 0: Killed"
    std::string srun_failure;
    for (absl::string_view line : absl::StrSplit(report->output_tail, '\n')) {
      if (absl::StartsWith(line, "srun: error: ") &&
          absl::StrContains(line, ": task 0: ")) {
        task_line = std::string(line);
      } else if (absl::StartsWith(line, "srun: fatal: ") ||
                 absl::StartsWith(line, "srun: error: Unable to ")) {
        srun_failure = std::string(line);
      }
    }
    if (!task_line.empty()) {
      absl::string_view rest = absl::StripPrefix(task_line, "srun: error: ");
      const std::string node(rest.substr(0, rest.find(':')));
      const std::string what(rest.substr(rest.find(": task 0: ") + 10));
      const int code = report->exit_code;
      if (absl::StartsWith(what, "Exited with exit code")) {
        report->error->message = absl::StrCat(
            report->name, " (srun pid ", report->pid, ") exited with code ",
            code, " on Slurm node ", node);
      } else if (code > 128 && code < 128 + 65) {
        report->signal = code - 128;
        report->exit_code = -1;
        report->error->message = absl::StrCat(
            report->name, " (srun pid ", report->pid,
            ") was killed by signal ", report->signal, " (",
            internal::SignalName(report->signal), ") on Slurm node ", node,
            " (srun: ", what, ")");
      }
      return;
    }
    if (!srun_failure.empty()) {
      report->error->type = std::string(kProcessStartError);
      report->error->message =
          absl::StrCat(report->name, ": srun could not run it: ", srun_failure);
    }
  }

  void End() override {
    if (job_id_.empty()) return;
    constexpr absl::Duration kClientTimeout = absl::Seconds(60);
    if (own_allocation_) {
      // Every job step goes with the allocation.
      (void)RunClient({options_.scancel, job_id_}, kClientTimeout);
      WaitUntilGone({options_.squeue, absl::StrCat("--jobs=", job_id_),
                     "--noheader", "--format=%i"},
                    "", {});
    } else {
      // The caller's allocation stays; this run's job steps that a SIGKILL
      // left running go.
      absl::StatusOr<Ran> steps = RunClient(
          {options_.squeue, "--steps", absl::StrCat("--jobs=", job_id_),
           "--noheader", "--format=%i %j"},
          kClientTimeout);
      if (steps.ok()) {
        std::vector<std::string> ids;
        for (absl::string_view line :
             absl::StrSplit(steps->output, '\n', absl::SkipWhitespace())) {
          std::pair<std::string, std::string> id_name =
              absl::StrSplit(line, absl::MaxSplits(' ', 1));
          if (absl::StartsWith(id_name.second, run_name_ + ".")) {
            ids.push_back(id_name.first);
          }
        }
        if (!ids.empty()) {
          std::vector<std::string> cancel = {options_.scancel};
          cancel.insert(cancel.end(), ids.begin(), ids.end());
          (void)RunClient(std::move(cancel), kClientTimeout);
          const std::vector<std::string> left = WaitUntilGone(
              {options_.squeue, "--steps", absl::StrCat("--jobs=", job_id_),
               "--noheader", "--format=%i"},
              absl::StrCat(job_id_, "."), ids);
          // Slurm cannot cancel a step whose srun was killed after it made
          // the step and before the step's tasks started: no slurmstepd
          // exists to end it, so it stays "RUNNING" until the allocation
          // ends (seen with Slurm 22.05). Say so rather than pass over it.
          if (!left.empty() && options_.message_fd >= 0) {
            const std::string line = absl::StrCat(
                "parallel: Slurm did not end job step ",
                absl::StrJoin(left, ", "),
                " of this run after scancel (a step whose srun was killed "
                "while it started cannot be cancelled); it holds its CPUs "
                "until allocation ", job_id_, " ends\n");
            (void)!::write(options_.message_fd, line.data(), line.size());
          }
        }
      }
    }
    job_id_.clear();
    own_allocation_ = false;
  }

 private:
  absl::StatusOr<Ran> Salloc(int parallelism, bool immediate) {
    std::vector<std::string> salloc = {
        options_.salloc, "--no-shell", absl::StrCat("--job-name=", run_name_),
        absl::StrCat("--ntasks=", parallelism)};
    if (immediate) salloc.push_back("--immediate=1");
    salloc.insert(salloc.end(), options_.salloc_args.begin(),
                  options_.salloc_args.end());
    return RunClient(std::move(salloc),
                     immediate ? absl::Seconds(60) : options_.allocation_timeout,
                     &interrupted_by_);
  }

  // Whether salloc --immediate failed only because the allocation has to
  // wait: the cluster is busy ("Requested nodes are busy", or "Pending job
  // allocation" and then "Unable to allocate resources"; "Resources
  // temporarily unavailable") or the request is more than is up now
  // ("Requested partition configuration not available now"). Anything else
  // (a bad partition, memory no node has) would fail without it too.
  static bool MustWait(absl::string_view output) {
    return absl::StrContains(output, "Pending job allocation") ||
           absl::StrContains(output, "nodes are busy") ||
           absl::StrContains(output, "temporarily unavailable") ||
           absl::StrContains(output, "not available now");
  }

  static std::string WaitReason(absl::string_view output) {
    if (absl::StrContains(output, "queued and waiting for resources")) {
      return "the cluster is busy: queued and waiting for resources";
    }
    const std::string line = LastLine(output);
    absl::string_view last = line;
    last = absl::StripPrefix(last, "salloc: ");
    last = absl::StripPrefix(last, "error: ");
    last = absl::StripPrefix(last, "Job submit/allocate failed: ");
    return std::string(last);
  }

  // Cancelling is asynchronous in Slurm (a step gets SIGTERM, then SIGKILL
  // after the cluster's KillWait): polls `squeue` (one id per line) until
  // none of its lines starts with `prefix` and, when `ids` is not empty, is
  // one of `ids` ("" and {} = until it prints nothing, or fails as it does
  // for a job that is gone), for at most options_.cancel_wait. Returns the lines
  // still there then.
  std::vector<std::string> WaitUntilGone(const std::vector<std::string>& squeue,
                                         const std::string& prefix,
                                         const std::vector<std::string>& ids) {
    const absl::Time deadline = absl::Now() + options_.cancel_wait;
    std::vector<std::string> left;
    while (true) {
      absl::StatusOr<Ran> ran = RunClient(squeue, absl::Seconds(60));
      if (!ran.ok() || ran->report.outcome != StepOutcome::kSucceeded) {
        return {};
      }
      left.clear();
      for (absl::string_view line :
           absl::StrSplit(ran->output, '\n', absl::SkipWhitespace())) {
        line = absl::StripAsciiWhitespace(line);
        if (!absl::StartsWith(line, prefix)) continue;
        if (!ids.empty() &&
            std::find(ids.begin(), ids.end(), line) == ids.end()) {
          continue;
        }
        left.emplace_back(line);
      }
      if (left.empty() || absl::Now() >= deadline) return left;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // Cancels an allocation this run asked for by its name (when salloc was
  // stopped before it said which).
  void CancelByName() {
    (void)RunClient({options_.scancel, absl::StrCat("--name=", run_name_),
                     "--quiet"},
                    absl::Seconds(60));
  }

  const SlurmOptions options_;
  int interrupted_by_ = 0;
  std::string run_name_;
  std::string job_id_;
  bool own_allocation_ = false;
};

}  // namespace

std::shared_ptr<CommandLauncher> SlurmLauncher(SlurmOptions options) {
  return std::make_shared<Slurm>(std::move(options));
}

}  // namespace parallel
