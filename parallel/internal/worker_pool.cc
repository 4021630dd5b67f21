#include "parallel/internal/worker_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <iostream>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/codec.h"
#include "parallel/failure.h"
#include "parallel/internal/capture.h"
#include "parallel/internal/child.h"
#include "parallel/internal/engine.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/in_process.h"
#include "parallel/internal/interrupt.h"
#include "parallel/internal/record.h"
#include "parallel/internal/stack.h"

namespace parallel {
namespace internal {
namespace {

// Inputs in flight per worker: one running, one waiting in its socket. With
// halt_on_error only one, so that nothing starts after a failure.
constexpr size_t kPipelineDepth = 2;

// The id a worker's kDone carries for its onexit.
constexpr uint64_t kOnexitId = std::numeric_limits<uint64_t>::max();

using DoneInfo = std::tuple<uint64_t, uint64_t, uint64_t>;
using FailureInfo = std::tuple<std::string, std::string, std::string>;

uint64_t OutputSize(int fd) { return FileSize(fd).value_or(0); }

bool SendAll(int fd, absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = RetryOnEintr(
        [&] { return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL); });
    if (n > 0) {
      bytes.remove_prefix(n);
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      pollfd pfd = {fd, POLLOUT, 0};
      RetryOnEintr([&] { return ::poll(&pfd, 1, -1); });
      if (pfd.revents & (POLLERR | POLLHUP)) return false;
      continue;
    }
    return false;
  }
  return true;
}

// The worker's side: run inputs until told to finish. Returns its exit code.
int WorkerMain(int socket, const TaskBody& task,
               const std::function<void()>& onexit, bool keep_values) {
  std::string inbox;
  char buffer[1 << 16];
  std::string outbox;
  // The worker alone writes its capture file, so each input starts where the
  // last one ended.
  uint64_t position = OutputSize(STDOUT_FILENO);
  while (true) {
    Record record;
    while (true) {
      absl::string_view view(inbox);
      absl::StatusOr<bool> taken = TakeRecord(&view, &record);
      if (!taken.ok()) return 3;  // the parent sent garbage
      if (*taken) {
        inbox.erase(0, inbox.size() - view.size());
        break;
      }
      const ssize_t n =
          RetryOnEintr([&] { return ::read(socket, buffer, sizeof(buffer)); });
      if (n <= 0) return 0;  // the parent is gone
      inbox.append(buffer, n);
    }
    outbox.clear();
    uint64_t id = kOnexitId;
    const uint64_t start = position;
    if (record.kind == RecordKind::kFinish) {
      if (onexit) {
        RunBody(
            [&onexit]() -> absl::StatusOr<std::string> {
              onexit();
              return std::string();
            },
            false, &outbox);
      }
    } else if (record.kind == RecordKind::kInput) {
      std::tuple<uint64_t, std::string> input;
      if (!DecodeInto(record.payload, &input).ok()) return 3;
      id = std::get<0>(input);
      const std::string& args = std::get<1>(input);
      RunBody([&task, &args] { return task(args); }, keep_values, &outbox);
    } else {
      return 3;
    }
    position = OutputSize(STDOUT_FILENO);
    AppendRecord(RecordKind::kDone, Encode(DoneInfo(id, start, position)),
                 &outbox);
    if (!SendAll(socket, outbox)) return 0;
    if (record.kind == RecordKind::kFinish) return 0;
  }
}

}  // namespace

struct WorkerPool::Worker {
  size_t slot = 0;
  Child child;
  UniqueFd socket;  // the parent's end, non-blocking
  std::shared_ptr<UniqueFd> capture;
  std::string inbox;
  // Inputs sent to it, oldest first: the front one runs, the others wait in
  // its socket so it never idles while the parent catches up.
  std::deque<size_t> assigned;
  std::optional<Record> result;  // kValue / kFailure of the running input
  std::string crash_trace;
  std::string hang_trace;
  uint64_t output_end = 0;  // where the worker's last input's output ended
  bool finish_sent = false;
  absl::Time deadline = absl::InfiniteFuture();
  absl::Time silent_deadline = absl::InfiniteFuture();
  uint64_t last_size = 0;
  KillReason kill = KillReason::kNone;
  KillSequence killing;

  bool alive() const { return child.alive(); }
  std::optional<size_t> running() const {
    return assigned.empty() ? std::nullopt
                            : std::optional<size_t>(assigned.front());
  }
};

struct WorkerPool::OnexitOutput {
  size_t slot;
  std::shared_ptr<UniqueFd> capture;
  uint64_t start;
  uint64_t end;
};

struct WorkerPool::Input {
  // kWaiting: not yet with a worker (or taken back from a dead one);
  // kQueued: sent to a worker, not started; kRunning; kDone.
  enum State { kWaiting, kQueued, kRunning, kDone };
  State state = kWaiting;
  std::string args;  // kept until the input starts, to resend if need be
  StepReport report;
  std::shared_ptr<UniqueFd> capture;
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t replayed = 0;  // bytes of [start, end) already replayed
  bool drop = false;
  absl::Time dispatched;
};

WorkerPool::WorkerPool(TaskBody task, PoolConfig config)
    : task_(std::move(task)), config_(std::move(config)) {}

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Start(
    TaskBody task, PoolConfig config) {
  if (config.processes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "processes must be >= 0 (0 = number of CPUs), got ", config.processes));
  }
  if (config.timeout <= absl::ZeroDuration() ||
      config.silent_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "timeout and silent_timeout must be positive");
  }
  if (::fcntl(config.output_fd, F_GETFD) == -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output_fd ", config.output_fd, " is not an open file descriptor"));
  }
  if (absl::Status status = CheckTempDir(config.temp_dir); !status.ok()) {
    return status;
  }
  std::unique_ptr<WorkerPool> pool(
      new WorkerPool(std::move(task), std::move(config)));
  if (InProcessMode()) {
    pool->inline_ = true;  // the test seam: no workers; Put() runs the task
    return pool;
  }
  pool->dev_null_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (pool->dev_null_ < 0) return ErrnoStatus("open /dev/null");
  std::fflush(stdout);
  std::fflush(stderr);
  for (int i = 0; i < pool->config_.processes; ++i) {
    pool->workers_.push_back(std::make_unique<Worker>());
    pool->workers_.back()->slot = i;
    if (absl::Status status = pool->StartWorker(i); !status.ok()) return status;
  }
  return pool;
}

WorkerPool::~WorkerPool() {
  for (auto& worker : workers_) {
    if (worker->alive()) {
      worker->child.SignalGroup(SIGKILL);
      worker->child.Reap();
    }
  }
  if (dev_null_ >= 0) ::close(dev_null_);
}

absl::Status WorkerPool::StartWorker(size_t slot) {
  Worker& worker = *workers_[slot];
  absl::StatusOr<UniqueFd> capture = CreateCaptureFile(config_.temp_dir);
  if (!capture.ok()) return capture.status();
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return ErrnoStatus("socketpair");
  }
  UniqueFd parent_end(sockets[0]);
  UniqueFd worker_end(sockets[1]);
  ChildIo io;
  io.stdin_fd = dev_null_;
  io.stdout_fd = capture->get();
  io.stderr_fd = capture->get();
  io.result_fd = worker_end.get();
  std::vector<int> own_fds = {dev_null_, parent_end.get(), config_.output_fd};
  for (const auto& other : workers_) {
    for (int fd : {other->socket.get(), other->child.pidfd(),
                   other->capture ? other->capture->get() : -1}) {
      if (fd >= 0) own_fds.push_back(fd);
    }
  }
  for (size_t i = next_replay_; i < inputs_.size(); ++i) {
    if (inputs_[i].capture) own_fds.push_back(inputs_[i].capture->get());
  }
  io.fds_to_close = &own_fds;
  const int socket = worker_end.get();
  absl::StatusOr<Child> child = ForkProcess(
      [this, socket] {
        return WorkerMain(socket, task_, config_.onexit, config_.keep_values);
      },
      io);
  if (!child.ok()) return child.status();
  ::fcntl(parent_end.get(), F_SETFL, O_NONBLOCK);
  worker.child = *std::move(child);
  worker.socket = std::move(parent_end);
  worker.capture = std::make_shared<UniqueFd>(*std::move(capture));
  worker.inbox.clear();
  worker.assigned.clear();
  worker.result.reset();
  worker.crash_trace.clear();
  worker.hang_trace.clear();
  worker.output_end = 0;
  worker.finish_sent = false;
  worker.kill = KillReason::kNone;
  worker.killing = KillSequence();
  return absl::OkStatus();
}

std::string WorkerPool::Who(size_t worker) const {
  return absl::StrCat("worker pid ", workers_[worker]->child.pid());
}

size_t WorkerPool::FreeWorker() const {
  size_t best = workers_.size();
  for (size_t i = 0; i < workers_.size(); ++i) {
    const Worker& worker = *workers_[i];
    if (!worker.alive() || worker.kill != KillReason::kNone ||
        worker.finish_sent ||
        worker.assigned.size() >=
            (config_.halt_on_error ? 1 : kPipelineDepth)) {
      continue;
    }
    if (best == workers_.size() ||
        worker.assigned.size() < workers_[best]->assigned.size()) {
      best = i;
    }
  }
  return best;
}

bool WorkerPool::DispatchWaiting() {
  while (!waiting_.empty()) {
    const size_t worker = FreeWorker();
    if (worker == workers_.size()) return false;
    const size_t input = waiting_.front();
    waiting_.pop_front();
    Dispatch(worker, input);
  }
  return true;
}

void WorkerPool::FailWaitingIfNoWorker() {
  if (AnyWorkerAlive()) return;
  for (size_t input : waiting_) {
    Fail(inputs_[input], kProcessStartError,
         "no worker process could be started");
    inputs_[input].state = Input::kDone;
  }
  waiting_.clear();
}

bool WorkerPool::AnyWorkerAlive() const {
  return std::any_of(workers_.begin(), workers_.end(),
                     [](const auto& worker) { return worker->alive(); });
}

void WorkerPool::Put(std::string encoded_args, std::string label) {
  const size_t index = inputs_.size();
  inputs_.emplace_back();
  Input& input = inputs_[index];
  input.report.name = std::move(label);
  if (inline_) {
    input.state = Input::kDone;
    if (halted_) {
      input.report.outcome = StepOutcome::kHalted;
      return;
    }
    std::fflush(stdout);
    const absl::Time start = absl::Now();
    input.report.started = true;
    input.report.pid = ::getpid();
    ExceptionInfo error;
    std::string value;
    if (RunInProcess([this, &encoded_args] { return task_(encoded_args); },
                     absl::StrCat(input.report.name, " (in process)"), &value,
                     &error)) {
      input.report.outcome = StepOutcome::kSucceeded;
      input.report.exit_code = 0;
      if (config_.keep_values) input.report.value = std::move(value);
    } else {
      error.step = input.report.name;
      input.report.outcome = StepOutcome::kFailed;
      input.report.error = std::move(error);
      if (config_.halt_on_error) halted_ = true;
    }
    std::fflush(stdout);
    input.report.duration = absl::Now() - start;
    return;
  }
  if (halted_ || interrupt_signal_ != 0 || finishing_) {
    input.state = Input::kDone;
    input.report.outcome = interrupt_signal_ != 0 ? StepOutcome::kInterrupted
                                                  : StepOutcome::kHalted;
    return;
  }
  input.args = std::move(encoded_args);
  waiting_.push_back(index);
  // Backpressure: return once the input is with a worker.
  while (!waiting_.empty()) {
    if (halted_ || interrupt_signal_ != 0) {
      DropWaiting();
      break;
    }
    if (DispatchWaiting()) break;
    FailWaitingIfNoWorker();
    if (waiting_.empty()) break;
    Turn();
  }
  Replay();
}

void WorkerPool::DropWaiting() {
  for (size_t input : waiting_) {
    inputs_[input].state = Input::kDone;
    inputs_[input].report.outcome = interrupt_signal_ != 0
                                        ? StepOutcome::kInterrupted
                                        : StepOutcome::kHalted;
  }
  waiting_.clear();
}

void WorkerPool::Dispatch(size_t index, size_t input_index) {
  Worker& worker = *workers_[index];
  Input& input = inputs_[input_index];
  std::string frame;
  AppendRecord(
      RecordKind::kInput,
      Encode(std::make_tuple(static_cast<uint64_t>(input_index), input.args)),
      &frame);
  input.state = Input::kQueued;
  input.report.pid = worker.child.pid();
  worker.assigned.push_back(input_index);
  if (worker.assigned.size() == 1) Started(index, absl::Now());
  if (!SendAll(worker.socket.get(), frame)) {
    // The worker died before it could take the input: WorkerEnded() hands
    // it to another once the pidfd says so.
    worker.child.SignalGroup(SIGKILL);
  }
}

void WorkerPool::Started(size_t index, absl::Time now) {
  Worker& worker = *workers_[index];
  Input& input = inputs_[worker.assigned.front()];
  input.state = Input::kRunning;
  input.args.clear();
  input.args.shrink_to_fit();
  input.capture = worker.capture;
  input.start = worker.output_end;
  input.report.started = true;
  input.dispatched = now;
  worker.deadline = now + config_.timeout;
  worker.silent_deadline = now + config_.silent_timeout;
  worker.last_size = input.start;
}

void WorkerPool::Turn() {
  // Members, not locals: this runs once per input or more.
  std::vector<pollfd>& fds = poll_fds_;
  std::vector<size_t>& owners = poll_owners_;
  fds.clear();
  owners.clear();
  absl::Time wake = absl::InfiniteFuture();
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& worker = *workers_[i];
    if (!worker.alive()) continue;
    fds.push_back({worker.socket.get(), POLLIN, 0});
    owners.push_back(i);
    fds.push_back({worker.child.pidfd(), POLLIN, 0});
    owners.push_back(i);
    if (worker.killing.started()) {
      wake = std::min(wake, worker.killing.next());
    } else if (!worker.assigned.empty()) {
      wake = std::min({wake, worker.deadline, worker.silent_deadline});
    }
  }
  if (fds.empty()) return;
  if (next_replay_ < inputs_.size() &&
      inputs_[next_replay_].state == Input::kRunning) {
    wake = std::min(wake, now + kLiveStreamInterval);
  }
  int ready;
  {
    // Between our calls the caller's own code runs, and a signal then keeps
    // the caller's disposition; while we wait, we act on it.
    InterruptWait waiting;
    if (interrupts_.wake_fd() >= 0)
      fds.push_back({interrupts_.wake_fd(), POLLIN, 0});
    timespec timeout =
        absl::ToTimespec(std::max(wake - now, absl::ZeroDuration()));
    ready =
        ::ppoll(fds.data(), fds.size(),
                wake == absl::InfiniteFuture() ? nullptr : &timeout, nullptr);
  }
  if (const int signo = InterruptScope::pending();
      signo != 0 && interrupt_signal_ == 0) {
    interrupt_signal_ = signo;
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i]->alive()) BeginKill(i, KillReason::kInterrupt);
    }
  }
  if (ready > 0) {
    for (size_t i = 0; i < owners.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const size_t worker = owners[i];
      if (!workers_[worker]->alive()) continue;
      if (fds[i].fd == workers_[worker]->socket.get()) {
        ReadFrom(worker);
      } else {
        WorkerEnded(worker);
      }
    }
  }
  CheckDeadlines(absl::Now());
  Replay();
}

void WorkerPool::ReadFrom(size_t index) {
  Worker& worker = *workers_[index];
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = RetryOnEintr(
        [&] { return ::read(worker.socket.get(), buffer, sizeof(buffer)); });
    if (n <= 0) break;
    worker.inbox.append(buffer, n);
    if (static_cast<size_t>(n) < sizeof(buffer)) break;  // drained, most likely
  }
  absl::string_view view(worker.inbox);
  while (true) {
    Record record;
    absl::StatusOr<bool> taken = TakeRecord(&view, &record);
    if (!taken.ok()) {
      // The worker's channel is corrupt: nothing it says can be trusted.
      if (std::optional<size_t> running = worker.running()) {
        Input& input = inputs_[*running];
        worker.assigned.pop_front();
        Fail(input, kCorruptResult,
             absl::StrCat("input sent a corrupt result: ",
                          taken.status().message(), " [", Who(index), "]"));
        input.end = OutputSize(worker.capture->get());
        input.state = Input::kDone;
      }
      view = {};
      worker.child.SignalGroup(SIGKILL);
      break;
    }
    if (!*taken) break;
    HandleRecord(index, record);
  }
  worker.inbox.erase(0, worker.inbox.size() - view.size());
}

void WorkerPool::HandleRecord(size_t index, const Record& record) {
  Worker& worker = *workers_[index];
  switch (record.kind) {
    case RecordKind::kValue:
    case RecordKind::kFailure:
      worker.result = record;
      return;
    case RecordKind::kCrash:
      worker.crash_trace = record.payload;
      return;
    case RecordKind::kHang:
      worker.hang_trace = record.payload;
      return;
    case RecordKind::kDone:
      break;
    default:
      return;
  }
  DoneInfo done;
  if (!DecodeInto(record.payload, &done).ok()) return;
  const auto [id, start, end] = done;
  std::optional<Record> result = std::move(worker.result);
  worker.result.reset();
  if (id == kOnexitId) {
    onexit_outputs_.push_back({worker.slot, worker.capture, start, end});
    if (result && result->kind == RecordKind::kFailure) {
      FailureInfo info;
      if (DecodeInto(result->payload, &info).ok()) {
        StepReport onexit;
        onexit.name = absl::StrCat("onexit of worker ", worker.slot);
        onexit.outcome = StepOutcome::kFailed;
        onexit.started = true;
        onexit.pid = worker.child.pid();
        onexit.error = ExceptionInfo{
            std::get<0>(info),
            absl::StrCat(std::get<1>(info), " [", Who(index), "]"),
            std::get<2>(info), onexit.name};
        onexit_failures_.push_back(std::move(onexit));
      }
    }
    return;
  }
  worker.output_end = end;
  if (worker.assigned.empty() || worker.assigned.front() != id)
    return;  // forged
  Input& input = inputs_[id];
  worker.assigned.pop_front();
  const absl::Time now = absl::Now();
  if (!worker.assigned.empty()) Started(index, now);
  input.state = Input::kDone;
  input.start = start;
  input.end = end;
  input.report.output_bytes = end >= start ? end - start : 0;
  input.report.duration = now - input.dispatched;
  input.report.exit_code = 0;
  if (result && result->kind == RecordKind::kValue) {
    input.report.outcome = StepOutcome::kSucceeded;
    input.report.value = std::move(result->payload);
    return;
  }
  FailureInfo info;
  if (result && DecodeInto(result->payload, &info).ok()) {
    Fail(input, std::get<0>(info),
         absl::StrCat(std::get<1>(info), " [", input.report.name, ", ",
                      Who(index), "]"),
         std::get<2>(info));
  } else {
    Fail(input, kCorruptResult,
         absl::StrCat(input.report.name, " (", Who(index),
                      ") sent no valid result"));
  }
}

void WorkerPool::WorkerEnded(size_t index) {
  Worker& worker = *workers_[index];
  ReadFrom(index);  // what it said before it ended
  const int status = worker.child.Reap();
  if (std::optional<size_t> running = worker.running();
      running && inputs_[*running].state == Input::kRunning) {
    worker.assigned.pop_front();
    Input& input = inputs_[*running];
    input.state = Input::kDone;
    input.end = OutputSize(worker.capture->get());
    input.report.output_bytes = input.end - input.start;
    input.report.duration = absl::Now() - input.dispatched;
    if (WIFEXITED(status)) input.report.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) input.report.signal = WTERMSIG(status);
    const std::string who =
        absl::StrCat(input.report.name, " (", Who(index), ")");
    switch (worker.kill) {
      case KillReason::kHalt:
        input.report.outcome = StepOutcome::kHalted;
        input.drop = true;
        break;
      case KillReason::kInterrupt:
        input.report.outcome = StepOutcome::kInterrupted;
        break;
      default: {
        ExceptionInfo info = EndedWithoutResult(
            who, status, worker.kill, config_.timeout, config_.silent_timeout,
            worker.hang_trace, worker.crash_trace, /*is_command=*/false);
        Fail(input, info.type, std::move(info.message),
             std::move(info.traceback));
      }
    }
  }
  // Inputs it had not started go back to the front of the line, in order.
  for (auto it = worker.assigned.rbegin(); it != worker.assigned.rend(); ++it) {
    Input& input = inputs_[*it];
    if (halted_ || interrupt_signal_ != 0) {
      input.state = Input::kDone;
      input.report.outcome =
          halted_ ? StepOutcome::kHalted : StepOutcome::kInterrupted;
    } else {
      input.state = Input::kWaiting;
      waiting_.push_front(*it);
    }
  }
  worker.assigned.clear();
  // A dead worker is replaced while inputs may still come or wait.
  if (!halted_ && interrupt_signal_ == 0 &&
      (!finishing_ || !waiting_.empty())) {
    if (!StartWorker(index).ok()) {
      // Out of processes or fds: go on with fewer workers.
    }
  }
}

void WorkerPool::Fail(Input& input, absl::string_view type, std::string message,
                      std::string traceback) {
  input.report.outcome = StepOutcome::kFailed;
  input.report.error = ExceptionInfo{std::string(type), std::move(message),
                                     std::move(traceback), input.report.name};
  if (config_.halt_on_error && !halted_) Halt();
}

void WorkerPool::Halt() {
  halted_ = true;
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i]->alive()) BeginKill(i, KillReason::kHalt);
  }
}

void WorkerPool::BeginKill(size_t index, KillReason reason) {
  Worker& worker = *workers_[index];
  if (worker.kill != KillReason::kNone && reason != KillReason::kHalt &&
      reason != KillReason::kInterrupt) {
    return;
  }
  const bool first = worker.kill == KillReason::kNone;
  worker.kill = reason;
  if (!first) return;
  worker.killing.Start(
      worker.child,
      reason == KillReason::kTimeout || reason == KillReason::kSilentTimeout,
      absl::Now());
}

void WorkerPool::CheckDeadlines(absl::Time now) {
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& worker = *workers_[i];
    if (!worker.alive()) continue;
    if (worker.killing.started()) {
      worker.killing.Advance(worker.child, now);
      continue;
    }
    if (worker.assigned.empty()) continue;
    if (now >= worker.deadline) {
      BeginKill(i, KillReason::kTimeout);
    } else if (now >= worker.silent_deadline) {
      const uint64_t size = OutputSize(worker.capture->get());
      if (size != worker.last_size) {
        worker.last_size = size;
        worker.silent_deadline = now + config_.silent_timeout;
      } else {
        BeginKill(i, KillReason::kSilentTimeout);
      }
    }
  }
}

bool WorkerPool::QueuedBehind(size_t input) const {
  for (const auto& worker : workers_) {
    if (!worker->assigned.empty() && worker->assigned.front() == input) {
      return worker->assigned.size() > 1;
    }
  }
  return false;
}

void WorkerPool::Replay() {
  while (next_replay_ < inputs_.size()) {
    Input& input = inputs_[next_replay_];
    if (input.state == Input::kWaiting || input.state == Input::kQueued) return;
    const bool live = input.state == Input::kRunning;
    // A running input is streamed live only while nothing is queued behind it
    // on its worker: once another input is sent, the worker may start it
    // before its report of this one arrives, and the file's end is no longer
    // this input's. Its rest then follows as soon as it is done.
    if (live && QueuedBehind(next_replay_)) return;
    if (input.capture && !input.drop && !replay_broken_) {
      const uint64_t end = live ? OutputSize(input.capture->get()) : input.end;
      const uint64_t from = input.start + input.replayed;
      if (end > from) {
        absl::StatusOr<uint64_t> copied = CopyRange(
            input.capture->get(), from, end - from, config_.output_fd);
        if (copied.ok()) {
          input.replayed += *copied;
        } else {
          replay_broken_ = true;
        }
      }
    }
    if (input.state == Input::kRunning) return;  // the live head
    input.capture.reset();
    ++next_replay_;
  }
}

const RunReport& WorkerPool::Finish() {
  if (finished_) return report_;
  finishing_ = true;
  if (inline_ && config_.onexit && !halted_) {
    ExceptionInfo error;
    std::string ignored;
    if (!RunInProcess(
            [this]() -> absl::StatusOr<std::string> {
              config_.onexit();
              return std::string();
            },
            "onexit (in process)", &ignored, &error)) {
      StepReport onexit;
      onexit.name = "onexit";
      onexit.outcome = StepOutcome::kFailed;
      error.step = onexit.name;
      onexit.error = std::move(error);
      onexit_failures_.push_back(std::move(onexit));
    }
  }
  std::string frame;
  AppendRecord(RecordKind::kFinish, "", &frame);
  while (true) {
    if (!halted_ && interrupt_signal_ == 0) {
      DispatchWaiting();
      FailWaitingIfNoWorker();
      if (waiting_.empty()) {
        // Each worker runs onexit after the inputs already in its socket.
        for (auto& worker : workers_) {
          if (worker->alive() && worker->kill == KillReason::kNone &&
              !worker->finish_sent) {
            worker->finish_sent = true;
            if (!SendAll(worker->socket.get(), frame)) {
              worker->child.SignalGroup(SIGKILL);
            }
          }
        }
      }
    } else {
      DropWaiting();
    }
    if (!AnyWorkerAlive()) break;
    Turn();
  }
  Replay();
  std::stable_sort(onexit_outputs_.begin(), onexit_outputs_.end(),
                   [](const OnexitOutput& a, const OnexitOutput& b) {
                     return a.slot < b.slot;
                   });
  for (const OnexitOutput& output : onexit_outputs_) {
    if (replay_broken_ || output.end <= output.start) continue;
    if (!CopyRange(output.capture->get(), output.start,
                   output.end - output.start, config_.output_fd)
             .ok()) {
      replay_broken_ = true;
    }
  }
  onexit_outputs_.clear();
  report_.steps.reserve(inputs_.size() + onexit_failures_.size());
  for (Input& input : inputs_) report_.steps.push_back(std::move(input.report));
  for (StepReport& failure : onexit_failures_)
    report_.steps.push_back(std::move(failure));
  report_.interrupt_signal = interrupt_signal_;
  inputs_.clear();
  next_replay_ = 0;
  finished_ = true;
  return report_;
}

void WorkerPool::Kill() {
  halted_ = true;
  finishing_ = true;
  DropWaiting();
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& worker = *workers_[i];
    if (!worker.alive()) continue;
    worker.kill = KillReason::kHalt;
    worker.child.SignalGroup(SIGKILL);
    WorkerEnded(i);
  }
}

}  // namespace internal
}  // namespace parallel
