#include "parallel/internal/worker_pool.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/codec.h"
#include "parallel/failure.h"
#include "parallel/internal/capture.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/in_process.h"
#include "parallel/internal/judge.h"
#include "parallel/internal/launch.h"
#include "parallel/internal/record.h"
#include "parallel/internal/replayer.h"
#include "parallel/internal/result.h"
#include "parallel/internal/supervisor.h"
#include "parallel/internal/worker_main.h"
#include "parallel/options.h"
#include "parallel/step_observer_internal.h"

namespace parallel {
namespace internal {
namespace {

// Inputs in flight per worker: one running, one waiting in its socket. With
// halt_on_error only one, so that nothing starts after a failure.
constexpr size_t kPipelineDepth = 2;
// A worker slot that dies this many times in a row before starting anything
// is not replaced again (a broken fork, never a respawn loop).
constexpr int kMaxBarrenStarts = 3;

class ProcessPool : public WorkerPool, public SupervisorClient {
 public:
  ProcessPool(TaskBody task, PoolConfig config)
      : task_(std::move(task)),
        config_(std::move(config)),
        replayer_(ReplayOptions{config_.output_fd, config_.combine_stderr,
                                config_.error_fd, config_.temp_dir,
                                config_.tag_lines, nullptr}),
        supervisor_(&replayer_, this) {}

  absl::Status StartWorkers();
  void Put(std::string encoded_args, std::string label) override;
  const RunReport& Finish() override;
  void Kill() override;
  void OnEnded(size_t slot, const ProcessExit& exit, KillReason why) override;
  void OnReadable(size_t slot) override { ReadFrom(slot); }

 private:
  // A pipe pair the worker reuses (worker_main.h): the parent's read ends;
  // invalid until the first input on it, or after it was retired.
  struct Lane {
    UniqueFd out;
    UniqueFd err;  // only when !combine_stderr
  };
  struct Worker {
    UniqueFd socket;  // the parent's end, non-blocking
    Lane lanes[kLanes];
    std::string inbox;
    // Inputs sent to it, oldest first; the front one runs once started.
    std::deque<size_t> assigned;
    bool front_started = false;
    ChildResult result;  // records of the running input
    bool finish_sent = false;
    bool onexit_started = false;
    bool ever_started = false;  // since it was forked
    int barren_starts = 0;      // deaths in a row before starting anything
  };
  struct Input {
    // kWaiting: with no worker; kQueued: sent, not started; kRunning; kDone.
    enum State { kWaiting, kQueued, kRunning, kDone };
    State state = kWaiting;
    std::string args;  // kept until it starts, to resend if need be
    uint32_t lane = 0;  // while with a worker
    StepReport report;
    absl::Time started;
  };

  absl::Status StartWorker(size_t slot);
  void Dispatch(size_t slot, size_t input);
  uint32_t FreeLane(const Worker& worker) const;
  bool DispatchWaiting();
  void FailWaitingIfNoWorker();
  void DropWaiting();
  size_t FreeWorker() const;
  bool AnyWorkerAlive() const;
  bool stopped() const {
    return supervisor_.stopping() != KillReason::kNone || killed_;
  }
  void ReadFrom(size_t slot);
  void HandleRecord(size_t slot, const Record& record);
  // The unit (input index, or an onexit's) that the worker runs now.
  // `pipes_empty`: the worker saw the input's lane empty at its end.
  void Conclude(size_t slot, size_t unit, StepReport& report,
                const JudgeInput& in, bool pipes_empty = false);
  std::string Who(size_t slot) const;
  void OwnFds(std::vector<int>* fds) const;

  TaskBody task_;
  const PoolConfig config_;
  Replayer replayer_;
  Supervisor supervisor_;
  std::vector<Worker> workers_;  // by supervisor slot
  std::deque<Input> inputs_;  // a deque: growing never moves them
  std::deque<size_t> waiting_;  // inputs not with any worker, in order
  // Onexit units by worker slot (added at Finish, after every input).
  std::vector<size_t> onexit_units_;
  std::vector<StepReport> onexit_reports_;
  bool finishing_ = false;
  bool finished_ = false;
  bool killed_ = false;
  RunReport report_;
  sigset_t signals_to_reset_;
};

absl::Status ProcessPool::StartWorkers() {
  signals_to_reset_ = NonDefaultSignals();
  for (int i = 0; i < config_.processes; ++i) {
    workers_.emplace_back();
    supervisor_.AddSlot();
    if (absl::Status status = StartWorker(i); !status.ok()) return status;
  }
  return absl::OkStatus();
}

void ProcessPool::OwnFds(std::vector<int>* fds) const {
  supervisor_.AppendFds(fds);
  // A dead worker's socket is no client descriptor any more, but still open.
  for (const Worker& worker : workers_) {
    if (worker.socket.valid()) fds->push_back(worker.socket.get());
    for (const Lane& lane : worker.lanes) {
      if (lane.out.valid()) fds->push_back(lane.out.get());
      if (lane.err.valid()) fds->push_back(lane.err.get());
    }
  }
}

absl::Status ProcessPool::StartWorker(size_t slot) {
  Worker& worker = workers_[slot];
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return ErrnoStatus("socketpair");
  }
  UniqueFd parent_end(sockets[0]);
  UniqueFd worker_end(sockets[1]);
  std::vector<int> own_fds = {parent_end.get()};
  OwnFds(&own_fds);
  ChildSetup setup;
  setup.stdin_fd = supervisor_.dev_null();
  setup.stdout_fd = supervisor_.dev_null();
  setup.stderr_fd = supervisor_.dev_null();
  setup.result_fd = worker_end.get();
  setup.signals_to_reset = &signals_to_reset_;
  setup.fds_to_close = &own_fds;
  const int socket = worker_end.get();
  absl::StatusOr<Child> child = ForkProcess(
      [this, socket] {
        return WorkerMain(socket, task_, config_.onexit, config_.keep_values,
                          config_.combine_stderr);
      },
      setup);
  if (!child.ok()) return child.status();
  ::fcntl(parent_end.get(), F_SETFL, O_NONBLOCK);
  const int barren = worker.barren_starts;
  worker = Worker();
  worker.barren_starts = barren;
  worker.socket = std::move(parent_end);
  supervisor_.Launch(slot, *std::move(child),
                     SlotOptions{config_.timeout, config_.silent_timeout, true},
                     absl::Now());
  supervisor_.SetClientFd(slot, worker.socket.get());
  return absl::OkStatus();
}

std::string ProcessPool::Who(size_t slot) const {
  return absl::StrCat("worker pid ", supervisor_.child(slot).pid());
}

size_t ProcessPool::FreeWorker() const {
  const size_t depth = config_.halt_on_error ? 1 : kPipelineDepth;
  size_t best = workers_.size();
  for (size_t i = 0; i < workers_.size(); ++i) {
    const Worker& worker = workers_[i];
    if (!supervisor_.active(i) ||
        supervisor_.kill_reason(i) != KillReason::kNone || worker.finish_sent ||
        worker.assigned.size() >= depth) {
      continue;
    }
    if (best == workers_.size() ||
        worker.assigned.size() < workers_[best].assigned.size()) {
      best = i;
    }
  }
  return best;
}

bool ProcessPool::AnyWorkerAlive() const {
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (supervisor_.active(i)) return true;
  }
  return false;
}

bool ProcessPool::DispatchWaiting() {
  while (!waiting_.empty()) {
    const size_t worker = FreeWorker();
    if (worker == workers_.size()) return false;
    const size_t input = waiting_.front();
    waiting_.pop_front();
    Dispatch(worker, input);
  }
  return true;
}

void ProcessPool::FailWaitingIfNoWorker() {
  if (AnyWorkerAlive()) return;
  for (size_t index : waiting_) {
    Input& input = inputs_[index];
    input.state = Input::kDone;
    input.report.outcome = StepOutcome::kFailed;
    input.report.error = ExceptionInfo{std::string(kProcessStartError),
                                       "no worker process could be started", "",
                                       input.report.name, 0};
    replayer_.Close(index, /*drop=*/false);
  }
  waiting_.clear();
}

void ProcessPool::DropWaiting() {
  for (size_t index : waiting_) {
    Input& input = inputs_[index];
    input.state = Input::kDone;
    input.report.outcome = supervisor_.interrupt_signal() != 0
                               ? StepOutcome::kInterrupted
                               : StepOutcome::kHalted;
    replayer_.Close(index, /*drop=*/true);
  }
  waiting_.clear();
}

uint32_t ProcessPool::FreeLane(const Worker& worker) const {
  for (uint32_t lane = 0; lane < kLanes; ++lane) {
    const bool used =
        std::any_of(worker.assigned.begin(), worker.assigned.end(),
                    [&](size_t index) { return inputs_[index].lane == lane; });
    if (!used) return lane;
  }
  return 0;  // unreachable: kLanes >= kPipelineDepth
}

void ProcessPool::Dispatch(size_t slot, size_t index) {
  Worker& worker = workers_[slot];
  Input& input = inputs_[index];
  input.lane = FreeLane(worker);
  Lane& lane = worker.lanes[input.lane];
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
      input.state = Input::kDone;
      input.report.outcome = StepOutcome::kFailed;
      input.report.error = ExceptionInfo{
          std::string(kProcessStartError),
          absl::StrCat("could not capture output: ", status.message()), "",
          input.report.name, 0};
      replayer_.Close(index, false);
      return;
    }
  }
  replayer_.Attach(index, lane.out.get(), lane.err.get());
  std::string frame;
  AppendRecord(RecordKind::kInput,
               Encode(std::make_tuple(static_cast<uint64_t>(index), input.lane,
                                      new_pipes, input.args)),
               &frame);
  const int fds[2] = {out_w.get(), err_w.get()};
  input.state = Input::kQueued;
  input.report.pid = supervisor_.child(slot).pid();
  worker.assigned.push_back(index);
  if (SendFully(worker.socket.get(), frame.data(), frame.size(), fds,
                !new_pipes ? 0 : err_w.valid() ? 2 : 1) != 0) {
    // The worker is gone: its end (OnEnded) gives the input to another.
    supervisor_.child(slot).SignalGroup(SIGKILL);
  }
}

void ProcessPool::Put(std::string encoded_args, std::string label) {
  const size_t index = inputs_.size();
  inputs_.emplace_back();
  Input& input = inputs_[index];
  input.report.name = std::move(label);
  replayer_.Add(input.report.name);
  if (stopped() || finishing_) {
    input.state = Input::kDone;
    input.report.outcome = supervisor_.interrupt_signal() != 0
                               ? StepOutcome::kInterrupted
                               : StepOutcome::kHalted;
    replayer_.Close(index, /*drop=*/true);
    return;
  }
  input.args = std::move(encoded_args);
  waiting_.push_back(index);
  // Backpressure: return once the input is with a worker.
  while (!waiting_.empty()) {
    if (stopped()) {
      DropWaiting();
      break;
    }
    if (DispatchWaiting()) break;
    FailWaitingIfNoWorker();
    if (waiting_.empty()) break;
    supervisor_.Turn();
  }
  replayer_.Pump();
}

void ProcessPool::ReadFrom(size_t slot) {
  Worker& worker = workers_[slot];
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = RetryOnEintr(
        [&] { return ::read(worker.socket.get(), buffer, sizeof(buffer)); });
    if (n <= 0) break;
    worker.inbox.append(buffer, n);
    // A short read took all there was: the next would say EAGAIN.
    if (static_cast<size_t>(n) < sizeof(buffer)) break;
  }
  absl::string_view view(worker.inbox);
  while (true) {
    Record record;
    absl::StatusOr<bool> taken = TakeRecord(&view, &record);
    if (!taken.ok()) {
      // The channel is corrupt: nothing the worker says can be trusted.
      worker.result.corrupt = taken.status();
      view = {};
      supervisor_.child(slot).SignalGroup(SIGKILL);
      break;
    }
    if (!*taken) break;
    HandleRecord(slot, record);
  }
  worker.inbox.erase(0, worker.inbox.size() - view.size());
}

void ProcessPool::HandleRecord(size_t slot, const Record& record) {
  Worker& worker = workers_[slot];
  if (record.kind != RecordKind::kStarted && record.kind != RecordKind::kDone) {
    worker.result.Add(record);
    return;
  }
  uint64_t id = 0;
  bool left_processes = false;
  bool pipes_empty = false;
  if (record.kind == RecordKind::kStarted) {
    if (!DecodeInto(record.payload, &id).ok()) return;
  } else {
    std::tuple<uint64_t, bool, bool> done;
    if (!DecodeInto(record.payload, &done).ok()) return;
    std::tie(id, left_processes, pipes_empty) = done;
  }
  const absl::Time now = absl::Now();
  if (id == kOnexitId) {
    const size_t unit = onexit_units_[slot];
    if (record.kind == RecordKind::kStarted) {
      worker.onexit_started = true;
      worker.ever_started = true;
      supervisor_.Arm(slot, unit, now);
      return;
    }
    worker.onexit_started = false;
    JudgeInput in;
    in.who = absl::StrCat("onexit of worker ", slot, " (", Who(slot), ")");
    in.exit = ProcessExit::Exited(0);
    in.result = &worker.result;
    Conclude(slot, unit, onexit_reports_[slot], in);
    return;
  }
  if (worker.assigned.empty() || worker.assigned.front() != id) return;
  Input& input = inputs_[id];
  if (record.kind == RecordKind::kStarted) {
    worker.front_started = true;
    worker.ever_started = true;
    worker.barren_starts = 0;
    input.state = Input::kRunning;
    input.started = now;
    input.report.started = true;
    input.args.clear();
    input.args.shrink_to_fit();
    supervisor_.Arm(slot, id, now);
    return;
  }
  worker.assigned.pop_front();
  worker.front_started = false;
  JudgeInput in;
  in.who = absl::StrCat(input.report.name, " (", Who(slot), ")");
  in.exit = ProcessExit::Exited(0);
  in.result = &worker.result;
  input.state = Input::kDone;
  input.report.exit_code = 0;
  Conclude(slot, id, input.report, in, pipes_empty);
  // Conclude took the lane's bytes. A process the task left may still hold
  // the lane: the next input gets fresh pipes, and the leftover's later
  // writes fail (EPIPE) as they would on a closed step's pipe.
  if (left_processes) worker.lanes[input.lane] = Lane();
}

void ProcessPool::Conclude(size_t slot, size_t unit, StepReport& report,
                           const JudgeInput& given, bool pipes_empty) {
  Worker& worker = workers_[slot];
  JudgeInput in = given;
  in.timeout = config_.timeout;
  in.silent_timeout = config_.silent_timeout;
  const bool halted = in.why == KillReason::kHalt;
  replayer_.Close(unit, /*drop=*/halted, pipes_empty);
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

void ProcessPool::OnEnded(size_t slot, const ProcessExit& exit,
                          KillReason why) {
  Worker& worker = workers_[slot];
  ReadFrom(slot);  // what it said before it ended
  const pid_t pid =
      worker.assigned.empty() ? 0 : inputs_[worker.assigned.front()].report.pid;
  auto judge_death = [&](size_t unit, StepReport& report, std::string who) {
    JudgeInput in;
    in.who = std::move(who);
    in.why = why;
    in.exit = exit;
    in.result = &worker.result;
    in.stop_signal = supervisor_.stop_signal(slot);
    report.exit_code = exit.exit_code();
    report.signal = exit.signal();
    Conclude(slot, unit, report, in);
  };
  if (!worker.assigned.empty() && worker.front_started) {
    const size_t index = worker.assigned.front();
    worker.assigned.pop_front();
    Input& input = inputs_[index];
    input.state = Input::kDone;
    input.report.duration = absl::Now() - input.started;
    judge_death(index, input.report,
                absl::StrCat(input.report.name, " (worker pid ", pid, ")"));
  }
  if (worker.onexit_started) {
    judge_death(onexit_units_[slot], onexit_reports_[slot],
                absl::StrCat("onexit of worker ", slot, " (worker pid ",
                             onexit_reports_[slot].pid, ")"));
  } else if (worker.finish_sent) {
    // Its onexit ended (a no-op Close) or never began: nothing more to
    // replay from it; a replacement gets an onexit unit of its own.
    replayer_.Close(onexit_units_[slot], /*drop=*/false);
  }
  // Inputs it had not started go back to the front of the line, in order.
  for (auto it = worker.assigned.rbegin(); it != worker.assigned.rend(); ++it) {
    replayer_.Reopen(*it);
    inputs_[*it].state = Input::kWaiting;
    waiting_.push_front(*it);
  }
  worker.assigned.clear();
  worker.socket.reset();
  for (Lane& lane : worker.lanes) lane = Lane();
  if (!worker.ever_started) ++worker.barren_starts;
  if (stopped()) {
    DropWaiting();
    return;
  }
  // A dead worker is replaced while inputs may still come or wait.
  const bool needed = !finishing_ || !waiting_.empty();
  if (needed && worker.barren_starts < kMaxBarrenStarts) {
    if (!StartWorker(slot).ok()) {
      // Out of processes or fds: go on with fewer workers.
    }
  }
}

const RunReport& ProcessPool::Finish() {
  if (finished_) return report_;
  finishing_ = true;
  onexit_units_.resize(workers_.size(), Supervisor::kNoUnit);
  onexit_reports_.resize(workers_.size());
  while (true) {
    if (!stopped()) {
      DispatchWaiting();
      FailWaitingIfNoWorker();
      if (waiting_.empty()) {
        // Each worker runs onexit after the inputs already in its socket.
        for (size_t i = 0; i < workers_.size(); ++i) {
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
          std::string frame;
          AppendRecord(RecordKind::kFinish, "", &frame);
          if (!replayer_.Open(onexit_units_[i], &out_w, &err_w).ok() ||
              SendFully(worker.socket.get(), frame.data(), frame.size(),
                        std::vector<int>{out_w.get(), err_w.get()}.data(),
                        err_w.valid() ? 2 : 1) != 0) {
            supervisor_.child(i).SignalGroup(SIGKILL);
          }
        }
      }
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

}  // namespace

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
