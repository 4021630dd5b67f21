// The inputs' side of the pool (process_pool.h): queueing, dispatch, ends,
// cancelling and the final replay; and WorkerPool::Start.

#include "parallel/internal/process_pool.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/codec.h"
#include "parallel/internal/capture.h"
#include "parallel/internal/in_process.h"
#include "parallel/internal/launch.h"
#include "parallel/options.h"
#include "parallel/step_observer_internal.h"
#include "parallel/trace.h"

namespace parallel {
namespace internal {
size_t PipelineDepth(const PoolConfig& config) {
  if (config.pipeline_depth > 0) {
    return std::min<size_t>(config.pipeline_depth, kLanes);
  }
  // With halt_on_error only one, so that nothing starts after a failure.
  return config.halt_on_error ? 1 : kLanes;
}

ProcessPool::ProcessPool(TaskBody task, PoolConfig config)
    : task_(std::move(task)),
      config_(std::move(config)),
      depth_(PipelineDepth(config_)),
      claims_(static_cast<size_t>(config_.processes) * kLanes),
      spec_{&task_,
            &config_.onexit,
            &config_.initializer,
            config_.keep_values,
            config_.combine_stderr,
            false,
            claims_.words(),
            claims_.size()},
      replayer_(ReplayOptions{config_.output_fd, config_.combine_stderr,
                              config_.error_fd, config_.temp_dir,
                              config_.tag_lines, nullptr,
                              config_.replay_in_completion_order}),
      supervisor_(&replayer_, this) {}

size_t ProcessPool::Live(const Worker& worker) {
  return std::count_if(worker.assigned.begin(), worker.assigned.end(),
                       [](const Held& held) { return !held.stolen; });
}

bool ProcessPool::MayTake(size_t slot, bool idle_ok) const {
  const Worker& worker = workers_[slot];
  if (!supervisor_.active(slot) ||
      supervisor_.kill_reason(slot) != KillReason::kNone ||
      worker.finish_sent || worker.assigned.size() >= depth_ ||
      (!idle_ok && worker.assigned.empty())) {
    return false;
  }
  // Recycling: never more than its quota, and, under an RSS limit (known
  // only after each input), nothing queued behind a running input.
  const size_t held = worker.inputs_done + Live(worker);
  return !(config_.max_inputs_per_worker > 0 &&
           held >= static_cast<size_t>(config_.max_inputs_per_worker)) &&
         !(config_.max_worker_rss_bytes > 0 && Live(worker) > 0);
}

size_t ProcessPool::FreeWorker(bool idle_ok) const {
  size_t best = workers_.size();
  for (size_t i = 0; i < static_cast<size_t>(config_.processes); ++i) {
    const Worker& worker = workers_[i];
    if (!MayTake(i, idle_ok)) continue;
    if (best == workers_.size() ||
        Live(worker) < Live(workers_[best])) {
      best = i;
    }
  }
  return best;
}

size_t ProcessPool::Busy() const {
  size_t busy = 0;
  for (const Worker& worker : workers_) busy += Live(worker);
  return busy;
}

size_t ProcessPool::BusyProcesses() const {
  size_t busy = 0;
  for (const Worker& worker : workers_) busy += Live(worker) > 0;
  return busy;
}

bool ProcessPool::AnyWorkerAlive() const {
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (supervisor_.active(i)) return true;
  }
  return false;
}

bool ProcessPool::DispatchWaiting(bool may_fork) {
  const bool all = DispatchQueued(may_fork);
  if (all) Steal();
  FlushSends();
  return all;
}

void ProcessPool::FlushSends() {
  for (size_t slot = 0; slot < workers_.size(); ++slot) {
    if (!workers_[slot].outbox.empty()) SendQueued(slot);
  }
}

void ProcessPool::SendQueued(size_t slot) {
  Worker& worker = workers_[slot];
  if (!worker.socket.valid() || !supervisor_.active(slot)) return;
  if (worker.outbox.Flush(worker.socket.get()) != 0) {
    // The worker is gone: its end (OnEnded) gives its inputs to another.
    worker.outbox.Clear();
    supervisor_.child(slot).SignalGroup(SIGKILL);
  }
  supervisor_.WantWritable(slot, !worker.outbox.empty());
}

bool ProcessPool::DispatchQueued(bool may_fork) {
  const size_t capacity = config_.processes * depth_;
  while (!waiting_.empty()) {
    const size_t index = waiting_.front();
    Input& input = input_at(index);
    if (Busy() >= capacity) return false;  // one-shot processes count too
    // At most `processes` processes at work (one-shot ones included); an
    // input may also wait in a busy worker's socket.
    const bool may_add_process =
        BusyProcesses() < static_cast<size_t>(config_.processes);
    const bool own = static_cast<bool>(input.own_body);
    if (own && (!may_add_process || !may_fork)) return false;
    const size_t slot = own ? OneShotSlot() : FreeWorker(may_add_process);
    if (slot == workers_.size()) return false;
    waiting_.pop_front();
    if (!own) {
      SendTo(slot, index);
      continue;
    }
    if (config_.may_start && !config_.may_start(index, nullptr)) {
      EndUnstarted(index, StepOutcome::kHalted);
      continue;
    }
    if (absl::Status status = StartWorker(slot, &input.own_body);
        !status.ok()) {
      EndUnstarted(index, StepOutcome::kFailed,
                   ExceptionInfo{std::string(kProcessStartError),
                                 std::string(status.message()), "",
                                 input.report.name, 0});
      continue;
    }
    Dispatch(slot, index, 0, kNoClaim);
  }
  return true;
}

void ProcessPool::SendTo(size_t slot, size_t index) {
  // A pooled worker's lane has a claim word: queued before anyone may
  // withdraw the input.
  const uint32_t lane = FreeLane(workers_[slot]);
  const size_t claim_index = slot * kLanes + lane;
  ClaimWord* claim = claim_index < claims_.size()
                         ? &claims_.words()[claim_index]
                         : nullptr;
  if (claim != nullptr) claim->store(ClaimValue(index, ClaimState::kQueued));
  if (config_.may_start && !config_.may_start(index, claim)) {
    if (claim != nullptr) claim->store(0);
    EndUnstarted(index, StepOutcome::kHalted);
    return;
  }
  Dispatch(slot, index, lane,
           claim != nullptr ? static_cast<uint32_t>(claim_index) : kNoClaim);
}

void ProcessPool::Steal() {
  if (claims_.size() == 0 || stopped()) return;
  const size_t pooled = static_cast<size_t>(config_.processes);
  for (size_t thief = 0; thief < pooled; ++thief) {
    if (Live(workers_[thief]) != 0 || !MayTake(thief, /*idle_ok=*/true)) {
      continue;
    }
    // The live worker holding the most inputs (at least two: one it runs).
    size_t victim = pooled;
    size_t most = 1;
    for (size_t slot = 0; slot < pooled; ++slot) {
      if (slot == thief || !supervisor_.active(slot) ||
          supervisor_.kill_reason(slot) != KillReason::kNone) {
        continue;
      }
      const size_t live = Live(workers_[slot]);
      if (live > most) {
        most = live;
        victim = slot;
      }
    }
    if (victim == pooled) return;
    // Its newest input, never its front: withdrawn exactly, or it has
    // started after all (then it stays).
    std::deque<Held>& held = workers_[victim].assigned;
    auto newest = std::find_if(held.rbegin(), held.rend(),
                               [](const Held& h) { return !h.stolen; });
    if (newest->claim == kNoClaim ||
        !ClaimWithdraw(&claims_.words()[newest->claim], newest->index)) {
      continue;
    }
    newest->stolen = true;
    if (TakeBack(newest->index)) SendTo(thief, newest->index);
  }
}

bool ProcessPool::TakeBack(size_t index) {
  replayer_.Reopen(index);
  input_at(index).state = Input::kWaiting;
  if (!input_at(index).cancelled) return true;
  EndUnstarted(index, StepOutcome::kHalted);
  return false;
}

void ProcessPool::FailWaitingIfNoWorker() {
  if (AnyWorkerAlive() || waiting_.empty()) return;
  std::optional<ExceptionInfo> error = initializer_error_;
  if (initializer_failures_ < kMaxInitializerFailures) {
    error = ExceptionInfo{std::string(kProcessStartError),
                          "no worker process could be started", "", "", 0};
  }
  while (!waiting_.empty()) {
    const size_t index = waiting_.front();
    waiting_.pop_front();
    EndUnstarted(index, StepOutcome::kFailed, error);
  }
}

void ProcessPool::DropWaiting() {
  while (!waiting_.empty()) {
    const size_t index = waiting_.front();
    waiting_.pop_front();
    EndUnstarted(index, supervisor_.interrupt_signal() != 0
                            ? StepOutcome::kInterrupted
                            : StepOutcome::kHalted);
  }
}

void ProcessPool::EndUnstarted(size_t index, StepOutcome outcome,
                               std::optional<ExceptionInfo> error) {
  Input& input = input_at(index);
  input.report.outcome = outcome;
  if (error) {
    error->step = input.report.name;
    error->pid = 0;
    input.report.error = std::move(error);
  }
  replayer_.Close(index, /*drop=*/outcome != StepOutcome::kFailed);
  MarkDone(index);
}

void ProcessPool::MarkDone(size_t index) {
  Input& input = input_at(index);
  if (input.state == Input::kDone) return;
  input.state = Input::kDone;
  input.own_body = nullptr;
  --unfinished_;
  if (config_.on_done) config_.on_done(index, input.report);
  if (!config_.forget_ended) return;
  while (!inputs_.empty() && inputs_.front().state == Input::kDone) {
    inputs_.pop_front();
    ++first_input_;
  }
}

uint32_t ProcessPool::FreeLane(const Worker& worker) const {
  for (uint32_t lane = 0; lane < kLanes; ++lane) {
    const bool used =
        std::any_of(worker.assigned.begin(), worker.assigned.end(),
                    [&](const Held& held) { return held.lane == lane; });
    if (!used) return lane;
  }
  return 0;  // unreachable: kLanes >= depth_
}

void ProcessPool::Dispatch(size_t slot, size_t index, uint32_t lane_index,
                           uint32_t claim) {
  Worker& worker = workers_[slot];
  Input& input = input_at(index);
  Lane& lane = worker.lanes[lane_index];
  // A lane's pipes travel to the worker once, with its first input.
  UniqueFd out_w;
  UniqueFd err_w;
  const bool new_pipes = !lane.out.valid();
  if (new_pipes) {
    absl::Status status = MakeCapturePipe(&lane.out, &out_w);
    if (status.ok() && !config_.combine_stderr) {
      status = MakeCapturePipe(&lane.err, &err_w);
    }
    if (!status.ok()) {
      lane = Lane();
      EndUnstarted(index, StepOutcome::kFailed,
                   ExceptionInfo{std::string(kProcessStartError),
                                 absl::StrCat("could not capture output: ",
                                              status.message()),
                                 "", "", 0});
      return;
    }
  }
  replayer_.Attach(index, lane.out.get(), lane.err.get());
  input.state = Input::kQueued;
  input.report.pid = supervisor_.child(slot).pid();
  worker.assigned.push_back(Held{index, lane_index, claim});
  std::string record;
  AppendRecord(RecordKind::kInput,
               Encode(std::make_tuple(static_cast<uint64_t>(index), lane_index,
                                      new_pipes, input.entry, input.args,
                                      claim)),
               &record);
  // New pipes travel with the record's first byte. Sent with the pass's
  // others (FlushSends).
  std::vector<UniqueFd> pipes;
  if (new_pipes) {
    pipes.push_back(std::move(out_w));
    if (err_w.valid()) pipes.push_back(std::move(err_w));
  }
  worker.outbox.Append(record, std::move(pipes));
}

size_t ProcessPool::Add(PoolInput given) {
  const size_t index = first_input_ + inputs_.size();
  inputs_.emplace_back();
  Input& input = input_at(index);
  input.report.name = std::move(given.label);
  input.report.queued_time = absl::Now();
  replayer_.Add(input.report.name);
  ++unfinished_;
  if (stopped() || finishing_) {
    EndUnstarted(index, supervisor_.interrupt_signal() != 0
                            ? StepOutcome::kInterrupted
                            : StepOutcome::kHalted);
    return index;
  }
  if (initializer_failures_ >= kMaxInitializerFailures) {
    EndUnstarted(index, StepOutcome::kFailed, initializer_error_);
    return index;
  }
  input.args = std::move(given.args);
  input.entry = given.entry;
  input.own_body = std::move(given.own_body);
  input.timeout = given.timeout;
  waiting_.push_back(index);
  return index;
}

size_t ProcessPool::Submit(PoolInput input) { return Add(std::move(input)); }

bool ProcessPool::SendNow() {
  if (stopped()) return false;
  // Not the thread that drives Turn(): it forks no process (a child's
  // PR_SET_PDEATHSIG follows the thread that forked it, and its descriptors
  // would not be polled before the next Turn anyway).
  DispatchWaiting(/*may_fork=*/false);
  if (!waiting_.empty()) return false;
  for (const Worker& worker : workers_) {
    if (!worker.outbox.empty()) return false;
  }
  return true;
}

void ProcessPool::Turn(int wake_fd, absl::Time wake_at, WaitHooks* hooks) {
  const size_t unfinished = unfinished_;
  if (stopped()) {
    DropWaiting();
  } else {
    DispatchWaiting();
    FailWaitingIfNoWorker();
  }
  // An input that ended here (cancelled, refused) is news for the owner:
  // no waiting for the next event first.
  if (unfinished_ == unfinished) supervisor_.Turn(wake_fd, wake_at, hooks);
  if (stopped()) DropWaiting();
  replayer_.Pump();
}

void ProcessPool::Cancel(size_t index) {
  if (index < first_input_) return;  // ended, and forgotten
  Input& input = input_at(index);
  input.cancelled = true;
  if (input.state == Input::kWaiting) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), index));
    EndUnstarted(index, StepOutcome::kHalted);
    return;
  }
  if (input.state == Input::kDone) return;
  for (size_t slot = 0; slot < workers_.size(); ++slot) {
    const std::deque<Held>& assigned = workers_[slot].assigned;
    const auto held =
        std::find_if(assigned.begin(), assigned.end(), [&](const Held& h) {
          return h.index == index && !h.stolen;
        });
    if (held == assigned.end()) continue;
    // Not started yet: withdrawn, the worker skips it (its kDone ends it
    // halted) and what the worker runs goes on.
    if (held->claim != kNoClaim &&
        ClaimWithdraw(&claims_.words()[held->claim], index)) {
      return;
    }
    // Running: its end (OnEnded) judges it halted; the others it held go
    // back.
    supervisor_.Kill(slot, KillReason::kHalt, absl::Now());
    return;
  }
}

void ProcessPool::Conclude(size_t slot, size_t unit, StepReport& report,
                           absl::Duration timeout, const UnitEnd& end) {
  Worker& worker = workers_[slot];
  JudgeInput in;
  in.who = absl::StrCat(report.name, " (worker pid ", report.pid, ")");
  in.why = end.why;
  in.exit = end.exit;
  in.result = &worker.result;
  in.timeout = std::min(config_.timeout, timeout);
  in.silent_timeout = config_.silent_timeout;
  in.stop_signal = supervisor_.stop_signal(slot);
  report.exit_code = end.exit.exit_code();
  report.signal = end.exit.signal();
  const bool halted = in.why == KillReason::kHalt;
  replayer_.Close(unit, /*drop=*/halted, end.pipes_empty);
  in.capture_error = replayer_.capture_error(unit);
  supervisor_.Disarm(slot);
  Verdict verdict = Judge(in);
  report.pid = supervisor_.child(slot).alive() ? supervisor_.child(slot).pid()
                                               : report.pid;
  report.output_bytes = replayer_.total(unit);
  report.outcome = verdict.outcome;
  if (verdict.error) {
    verdict.error->step = report.name;
    verdict.error->pid = report.pid;
    report.error = std::move(verdict.error);
    report.output_tail = replayer_.Tail(unit);
  }
  if (config_.keep_values) report.value = std::move(verdict.value);
  DeliverNotes(report.name, report.pid, worker.result.notes);
  worker.result = ChildResult();
  if (report.outcome == StepOutcome::kFailed && config_.halt_on_error) {
    supervisor_.StopAll(KillReason::kHalt, absl::Now());
  }
}

void ProcessPool::SendFinish() {
  // Each worker runs onexit after the inputs already in its socket.
  for (size_t i = 0; i < static_cast<size_t>(config_.processes); ++i) {
    Worker& worker = workers_[i];
    if (!supervisor_.active(i) || worker.finish_sent ||
        supervisor_.kill_reason(i) != KillReason::kNone) {
      continue;
    }
    worker.finish_sent = true;
    onexit_units_[i] = replayer_.Add(absl::StrCat("onexit ", i));
    onexit_reports_[i].name = absl::StrCat("onexit of worker ", i);
    onexit_reports_[i].pid = supervisor_.child(i).pid();
    UniqueFd out_w, err_w;
    if (!replayer_.Open(onexit_units_[i], &out_w, &err_w).ok()) {
      supervisor_.child(i).SignalGroup(SIGKILL);
      continue;
    }
    std::string frame;
    AppendRecord(RecordKind::kFinish, "", &frame);
    // Its onexit's stdout pipe, and its stderr pipe unless combined.
    std::vector<UniqueFd> pipes;
    pipes.push_back(std::move(out_w));
    if (err_w.valid()) pipes.push_back(std::move(err_w));
    worker.outbox.Append(frame, std::move(pipes));
    SendQueued(i);
  }
}

RunReport& ProcessPool::Finish() {
  if (finished_) return report_;
  finishing_ = true;
  onexit_units_.resize(workers_.size(), Supervisor::kNoUnit);
  onexit_reports_.resize(workers_.size());
  while (true) {
    if (!stopped()) {
      DispatchWaiting();
      FailWaitingIfNoWorker();
      if (waiting_.empty()) SendFinish();
    } else {
      DropWaiting();
    }
    if (!AnyWorkerAlive()) break;
    supervisor_.Turn();
  }
  for (size_t unit : onexit_units_) {
    if (unit != Supervisor::kNoUnit) replayer_.Close(unit, killed_);
  }
  while (!replayer_.all_replayed() && replayer_.output_error() == 0) {
    supervisor_.Turn();
  }
  report_.steps.reserve(inputs_.size() + onexit_reports_.size());
  for (Input& input : inputs_) report_.steps.push_back(std::move(input.report));
  for (StepReport& onexit : onexit_reports_) {
    if (onexit.outcome == StepOutcome::kFailed)
      report_.steps.push_back(std::move(onexit));
  }
  report_.interrupt_signal = supervisor_.interrupt_signal();
  replayer_.ReportOutputError(&report_);
  report_.start_time = start_time_;
  report_.end_time = absl::Now();
  report_.slots = config_.processes;
  WriteTraceFile(config_.trace_file, &report_);
  first_input_ += inputs_.size();
  inputs_.clear();
  finished_ = true;
  return report_;
}

void ProcessPool::Kill() {
  killed_ = true;
  finishing_ = true;
  supervisor_.StopAll(KillReason::kHalt, absl::Now());
  DropWaiting();
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (supervisor_.active(i)) supervisor_.child(i).SignalGroup(SIGKILL);
  }
}

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Start(
    TaskBody task, PoolConfig config) {
  if (config.processes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "processes must be >= 0 (0 = number of CPUs), got ", config.processes));
  }
  if (absl::Status status = ValidateOptions(config); !status.ok())
    return status;
  if (absl::Status status = CheckTempDir(config.temp_dir); !status.ok()) {
    return status;
  }
  if (InProcessMode()) {
    return MakeInlinePool(std::move(task), std::move(config));
  }
  auto pool = std::make_unique<ProcessPool>(std::move(task), std::move(config));
  if (absl::Status status = pool->StartWorkers(); !status.ok()) return status;
  return std::unique_ptr<WorkerPool>(std::move(pool));
}

}  // namespace internal
}  // namespace parallel
