#include "parallel/internal/engine.h"

#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/internal/capture.h"
#include "parallel/internal/dont_fork_allocator.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/in_process.h"
#include "parallel/internal/judge.h"
#include "parallel/internal/launch.h"
#include "parallel/internal/replayer.h"
#include "parallel/internal/result.h"
#include "parallel/internal/supervisor.h"
#include "parallel/step_observer_internal.h"
#include "parallel/trace.h"

namespace parallel {
namespace internal {
namespace {

class Engine : public SupervisorClient {
 public:
  Engine(std::vector<Step> steps, const ParallelOptions& options,
         const RunHooks& hooks, std::string temp_dir)
      : steps_(std::make_move_iterator(steps.begin()),
               std::make_move_iterator(steps.end())),
        options_(options),
        hooks_(hooks),
        replayer_(ReplayOptions{options.output_fd, options.combine_stderr,
                                options.error_fd, std::move(temp_dir),
                                hooks.tag_lines, hooks.before_output,
                                /*completion_order=*/false,
                                hooks.line_buffer,
                                /*hold_live=*/bool{hooks.replay_output}}),
        supervisor_(&replayer_, this),
        reports_(steps_.size()),
        bodies_(steps_.size()) {
    for (size_t i = 0; i < steps_.size(); ++i) {
      reports_[i].name = steps_[i].name().empty() ? absl::StrCat("step ", i)
                                                  : steps_[i].name();
      if (!steps_[i].is_command()) bodies_[i] = std::move(steps_[i]).body();
    }
    limit_ = options_.max_parallel == 0
                 ? steps_.size()
                 : static_cast<size_t>(options_.max_parallel);
  }

  absl::StatusOr<RunReport> Run();
  void OnEnded(size_t slot, const ProcessExit& exit, KillReason why) override;

 private:
  struct Running {
    size_t step = 0;
    UniqueFd result;  // a closure's result records (memfd)
    absl::Time started;
    bool stopped = false;  // as last told to hooks_.on_stopped
  };

  void StartSteps(absl::Time now);
  absl::Status Launch(size_t index, absl::Time now);
  // What tags the step's lines (RunHooks::tag_lines).
  const std::string& LineTag(size_t index) const {
    return index < hooks_.line_tags.size() ? hooks_.line_tags[index]
                                           : reports_[index].name;
  }
  // The steps that will not start get their reports (and empty units).
  void SkipRest();
  void Ended(size_t index, StepOutcome outcome);
  void ReleaseTokens();
  // Tells hooks_.on_stopped about steps stopped or continued since the last
  // look; returns when to look next.
  absl::Time CheckStopped(absl::Time now);
  // The descriptors a new child must close.
  void OwnFds(std::vector<int>* fds) const;
  size_t TakeSlot();

  // Out of the children's address space (dont_fork_allocator.h): the cost
  // of a fork stays flat as the number of steps grows.
  std::vector<Step, DontForkAllocator<Step>> steps_;
  const ParallelOptions options_;
  const RunHooks hooks_;
  Replayer replayer_;
  Supervisor supervisor_;
  std::vector<StepReport, DontForkAllocator<StepReport>> reports_;
  // The closures' bodies, moved out of steps_ (a command's is empty). Each
  // is moved onto the stack for its fork and back after it, so that the
  // parent neither copies nor frees one per step: a malloc or free after a
  // fork writes allocator pages the young child still shares (a
  // copy-on-write fault each). The bodies' own heap blocks are the
  // caller's, and the child's to read.
  DontForkVector<Body> bodies_;
  // Written at every start and end, never read by a child.
  DontForkVector<Running> running_;  // by supervisor slot
  DontForkVector<size_t> free_slots_;
  size_t limit_ = 0;
  const absl::Time run_start_ = absl::Now();
  bool halting_soon_ = false;  // hooks_.should_halt said so: start no more
  size_t next_start_ = 0;
  size_t tokens_held_ = 0;  // permissions from hooks_.throttle
  bool waiting_for_token_ = false;
  bool start_blocked_ = false;  // out of fds or processes: wait for an end
  sigset_t signals_to_reset_;
  std::vector<int> fds_to_close_;  // scratch for Launch
  std::string result_buffer_;      // scratch for OnEnded
};

absl::StatusOr<RunReport> Engine::Run() {
  // On every way out — an exception from a hook included — the throttle gets
  // its permissions back. (Children are killed and reaped by ~Supervisor.)
  absl::Cleanup give_back = [this] {
    if (hooks_.throttle == nullptr) return;
    for (; tokens_held_ > 0; --tokens_held_) hooks_.throttle->Release();
  };
  // The run acts on SIGINT/SIGTERM/SIGHUP/SIGQUIT for its whole length:
  // between turns it only does bounded work, and the self-pipe wakes the
  // next turn.
  InterruptWait waiting;
  signals_to_reset_ = NonDefaultSignals();
  bool output_lost = false;
  absl::Time look_for_stops =
      hooks_.on_stopped ? absl::InfinitePast() : absl::InfiniteFuture();
  while (true) {
    const absl::Time now = LoopNow();
    if (replayer_.output_error() == EPIPE && !output_lost) {
      // Nobody reads the output any more: stop, as a filter would.
      output_lost = true;
      supervisor_.StopAll(KillReason::kHalt, now);
    }
    if (supervisor_.stopping() == KillReason::kNone) StartSteps(now);
    if (supervisor_.active_count() == 0 &&
        (next_start_ == steps_.size() || halting_soon_ ||
         supervisor_.stopping() != KillReason::kNone)) {
      SkipRest();
      replayer_.Pump();
      if (replayer_.all_replayed() || replayer_.output_error() != 0) break;
    }
    if (now >= look_for_stops) {
      look_for_stops = CheckStopped(now);
    }
    supervisor_.Turn(waiting_for_token_ ? hooks_.throttle->wake_fd() : -1,
                     look_for_stops);
  }
  RunReport report;
  report.interrupt_signal = supervisor_.interrupt_signal();
  replayer_.ReportOutputError(&report);
  report.start_time = run_start_;
  report.end_time = absl::Now();
  report.slots = static_cast<int>(std::min(limit_, steps_.size()));
  report.steps.reserve(reports_.size());
  for (StepReport& step : reports_) {
    if (!step.started) step.queued_time = run_start_;
    report.steps.push_back(std::move(step));
  }
  WriteTraceFile(options_.trace_file, &report);
  return report;
}

size_t Engine::TakeSlot() {
  if (free_slots_.empty()) {
    running_.emplace_back();
    return supervisor_.AddSlot();
  }
  const size_t slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void Engine::OwnFds(std::vector<int>* fds) const {
  fds->clear();
  supervisor_.AppendFds(fds);
  for (size_t slot = 0; slot < running_.size(); ++slot) {
    if (supervisor_.active(slot) && running_[slot].result.valid())
      fds->push_back(running_[slot].result.get());
  }
}

absl::Time Engine::CheckStopped(absl::Time now) {
  for (size_t slot = 0; slot < running_.size(); ++slot) {
    if (!supervisor_.active(slot)) continue;
    Running& run = running_[slot];
    const bool stopped = supervisor_.child(slot).StopSignal().has_value();
    if (stopped == run.stopped) continue;
    run.stopped = stopped;
    hooks_.on_stopped(run.step, stopped);
  }
  return now + absl::Seconds(1);
}

void Engine::ReleaseTokens() {
  // Keep one permission per running step beyond the implicit slot.
  const size_t running = supervisor_.active_count();
  const size_t needed = running == 0 ? 0 : running - 1;
  for (; tokens_held_ > needed; --tokens_held_) hooks_.throttle->Release();
}

void Engine::StartSteps(absl::Time now) {
  waiting_for_token_ = false;
  while (next_start_ < steps_.size() && supervisor_.active_count() < limit_ &&
         !start_blocked_ && !halting_soon_ &&
         supervisor_.stopping() == KillReason::kNone) {
    if (hooks_.throttle != nullptr &&
        supervisor_.active_count() >= tokens_held_ + 1) {
      // Beyond the implicit slot, each running step holds a permission.
      if (!hooks_.throttle->TryAcquire()) {
        waiting_for_token_ = true;
        return;
      }
      ++tokens_held_;
    }
    const size_t index = next_start_;
    absl::Status status = Launch(index, now);
    if (absl::IsResourceExhausted(status) && supervisor_.active_count() > 0) {
      // Out of fds or processes: go on with fewer at once.
      start_blocked_ = true;
      if (hooks_.throttle != nullptr) ReleaseTokens();
      return;
    }
    ++next_start_;
    if (status.ok()) {
      if (hooks_.on_start) hooks_.on_start(index);
      continue;
    }
    if (replayer_.size() == index) replayer_.Add(LineTag(index));
    replayer_.Close(index, /*drop=*/false);
    StepReport& report = reports_[index];
    report.started = false;
    // A program that cannot be run reads as a shell says it, with its code.
    const bool as_shell =
        absl::IsNotFound(status) || absl::IsPermissionDenied(status);
    if (as_shell) report.exit_code = absl::IsNotFound(status) ? 127 : 126;
    report.error = ExceptionInfo{
        std::string(kProcessStartError),
        as_shell ? std::string(status.message())
                 : absl::StrCat("could not start: ", status.message()),
        "", report.name, 0};
    Ended(index, StepOutcome::kFailed);
  }
}

absl::Status Engine::Launch(size_t index, absl::Time now) {
  const Step& step = steps_[index];
  if (replayer_.size() == index) replayer_.Add(LineTag(index));
  UniqueFd out_w;
  UniqueFd err_w;
  if (absl::Status status = replayer_.Open(index, &out_w, &err_w);
      !status.ok()) {
    return status;
  }
  if (hooks_.results_dir) {
    if (const std::string dir = hooks_.results_dir(index); !dir.empty()) {
      if (absl::Status status = replayer_.KeepCopies(index, dir);
          !status.ok()) {
        return status;
      }
    }
  }
  UniqueFd result;
  if (!step.is_command()) {
    result.reset(::memfd_create("parallel-result", MFD_CLOEXEC));
    if (!result.valid()) {
      const int error = errno;
      if (error == EMFILE || error == ENFILE || error == ENOMEM) {
        return absl::ResourceExhaustedError("memfd_create: too many files");
      }
      return ErrnoStatus(error, "memfd_create");
    }
  }
  ChildSetup setup;
  setup.watch_fd = supervisor_.watch_fd();
  setup.stdin_fd =
      hooks_.terminal_fd >= 0 ? hooks_.terminal_fd : supervisor_.dev_null();
  setup.foreground_tty_fd = hooks_.terminal_fd;
  setup.stdout_fd = out_w.get();
  setup.stderr_fd = err_w.valid() ? err_w.get() : out_w.get();
  setup.result_fd = result.get();
  setup.signals_to_reset = &signals_to_reset_;
  OwnFds(&fds_to_close_);
  setup.fds_to_close = &fds_to_close_;
  absl::StatusOr<Child> child;
  if (step.is_command()) {
    // GNU parallel's job number and slot (1-based); TakeSlot below takes
    // this same slot.
    const size_t slot = free_slots_.empty() ? running_.size() : free_slots_.back();
    const std::vector<std::string> extra_env = {
        absl::StrCat("PARALLEL_SEQ=", index + 1),
        absl::StrCat("PARALLEL_JOBSLOT=", slot + 1)};
    setup.extra_env = &extra_env;
    child = SpawnChild(step.argv(), setup);
  } else {
    // The body on the stack: bodies_ itself is not mapped in the child (see
    // dont_fork_allocator.h), the stack is.
    Body body = std::move(bodies_[index]);
    const int result_fd = result.get();
    const bool keep = options_.return_values;
    child =
        ForkProcess([&body, result_fd,
                     keep] { return RunBodyAndReport(body, result_fd, keep); },
                    setup);
    bodies_[index] = std::move(body);
  }
  if (!child.ok()) return child.status();
  StepReport& report = reports_[index];
  report.started = true;
  report.pid = child->pid();
  const size_t slot = TakeSlot();
  report.queued_time = run_start_;
  report.start_time = now;
  report.slot = static_cast<int>(slot);
  running_[slot] = Running{index, std::move(result), now};
  supervisor_.Launch(slot, *std::move(child),
                     SlotOptions{options_.timeout, options_.silent_timeout,
                                 !step.is_command()},
                     now);
  supervisor_.Arm(slot, index, now);
  return absl::OkStatus();
}

void Engine::OnEnded(size_t slot, const ProcessExit& exit, KillReason why) {
  Running& run = running_[slot];
  const size_t index = run.step;
  free_slots_.push_back(slot);
  start_blocked_ = false;
  StepReport& report = reports_[index];
  report.duration = LoopNow() - run.started;
  TakeTerminalBack(hooks_.terminal_fd);
  report.exit_code = exit.exit_code();
  report.signal = exit.signal();
  replayer_.Close(index, /*drop=*/why == KillReason::kHalt);
  report.output_bytes = replayer_.total(index);

  ChildResult result;
  if (run.result.valid()) {
    result_buffer_.clear();
    if (absl::StatusOr<uint64_t> size = FileSize(run.result.get()); size.ok()) {
      result_buffer_.resize(*size);
      const ssize_t got = RetryOnEintr([&] {
        return ::pread(run.result.get(), result_buffer_.data(), *size, 0);
      });
      result_buffer_.resize(got > 0 ? got : 0);
    }
    result = ParseChildResult(result_buffer_);
    run.result.reset();
    DeliverNotes(report.name, report.pid, result.notes);
  }
  JudgeInput in;
  in.who = absl::StrCat(report.name, " (pid ", report.pid, ")");
  in.why = why;
  in.exit = exit;
  in.result = steps_[index].is_command() ? nullptr : &result;
  in.timeout = options_.timeout;
  in.silent_timeout = options_.silent_timeout;
  in.stop_signal = supervisor_.stop_signal(slot);
  in.capture_error = replayer_.capture_error(index);
  Verdict verdict = Judge(in);
  if (verdict.error) {
    verdict.error->step = report.name;
    verdict.error->pid = report.pid;
    report.error = std::move(verdict.error);
    report.output_tail = replayer_.Tail(index);
  }
  if (options_.return_values) report.value = std::move(verdict.value);
  if (hooks_.replay_output) {
    report.outcome = verdict.outcome;
    if (!hooks_.replay_output(index, report)) replayer_.Drop(index);
  }
  Ended(index, verdict.outcome);
}

void Engine::Ended(size_t index, StepOutcome outcome) {
  StepReport& report = reports_[index];
  report.outcome = outcome;
  if (outcome == StepOutcome::kFailed && options_.halt_on_error) {
    supervisor_.StopAll(KillReason::kHalt, absl::Now());
  }
  if (hooks_.throttle != nullptr) ReleaseTokens();
  if (hooks_.on_end) hooks_.on_end(index, report);
  if (hooks_.should_halt) {
    switch (hooks_.should_halt(index, report)) {
      case RunHooks::Halt::kNow:
        supervisor_.StopAll(KillReason::kHalt, absl::Now());
        [[fallthrough]];
      case RunHooks::Halt::kSoon:
        halting_soon_ = true;
        break;
      case RunHooks::Halt::kNo:
        break;
    }
  }
}

void Engine::SkipRest() {
  const bool interrupted = supervisor_.stopping() == KillReason::kInterrupt;
  for (; next_start_ < steps_.size(); ++next_start_) {
    reports_[next_start_].outcome =
        interrupted ? StepOutcome::kInterrupted : StepOutcome::kHalted;
    if (replayer_.size() == next_start_) replayer_.Add("");
    replayer_.Close(next_start_, /*drop=*/true);
  }
}

}  // namespace

// The test seam (in_process.h): closures run here, one after another, with
// no capture; commands still run as processes, one at a time.
absl::StatusOr<RunReport> RunInProcessEngine(std::vector<Step> steps,
                                             const ParallelOptions& options,
                                             const RunHooks& hooks) {
  RunReport report;
  report.steps.resize(steps.size());
  bool halted = false;
  for (size_t i = 0; i < steps.size(); ++i) {
    StepReport& step = report.steps[i];
    step.name =
        steps[i].name().empty() ? absl::StrCat("step ", i) : steps[i].name();
    if (halted) {
      step.outcome = StepOutcome::kHalted;
      continue;
    }
    if (hooks.on_start) hooks.on_start(i);
    if (steps[i].is_command()) {
      std::vector<Step> one;
      one.push_back(std::move(steps[i]));
      ParallelOptions single = options;
      single.max_parallel = 1;
      absl::StatusOr<RunReport> real =
          Engine(std::move(one), single, RunHooks(),
                 ResolveTempDir(options.temp_dir))
              .Run();
      if (!real.ok()) return real.status();
      const std::string name = step.name;
      step = std::move(real->steps[0]);
      step.name = name;
      if (step.error) step.error->step = name;
    } else {
      RunStepInProcess(steps[i].body(), options.return_values, &step);
    }
    if (hooks.on_end) hooks.on_end(i, step);
    if (step.outcome == StepOutcome::kFailed && options.halt_on_error)
      halted = true;
    if (hooks.should_halt && hooks.should_halt(i, step) != RunHooks::Halt::kNo)
      halted = true;
  }
  return report;
}

absl::StatusOr<RunReport> RunEngine(std::vector<Step> steps,
                                    const ParallelOptions& options,
                                    const RunHooks& hooks) {
  if (absl::Status status = ValidateOptions(options); !status.ok())
    return status;
  if (hooks.terminal_fd >= 0 && options.max_parallel != 1) {
    return absl::InvalidArgumentError(
        "parallel: RunHooks::terminal_fd needs max_parallel == 1 (one step "
        "at a time has the terminal)");
  }
  if (InProcessMode())
    return RunInProcessEngine(std::move(steps), options, hooks);
  std::string temp_dir = ResolveTempDir(options.temp_dir);
  if (absl::Status status = CheckTempDir(temp_dir); !status.ok()) return status;
  Engine engine(std::move(steps), options, hooks, std::move(temp_dir));
  return engine.Run();
}

}  // namespace internal
}  // namespace parallel
