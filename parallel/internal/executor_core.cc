// ExecutorCore (executor_state.h): the loop thread, or the in-process
// seam's inline pool, between the owners (executor, task runners) and the
// worker pool.

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "parallel/internal/executor_state.h"
#include "parallel/internal/in_process.h"
#include "parallel/internal/interrupt.h"
#include "parallel/internal/supervisor.h"

namespace parallel {
namespace internal {

namespace {

absl::StatusCode CodeFor(const ExceptionInfo& error) {
  if (error.type == kProcessTimeout || error.type == kProcessSilentTimeout) {
    return absl::StatusCode::kDeadlineExceeded;
  }
  if (error.type == kProcessStartError) return absl::StatusCode::kUnavailable;
  return absl::StatusCode::kUnknown;
}

[[noreturn]] void ThrowStartError(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInvalidArgument) {
    throw std::invalid_argument(absl::StrCat("parallel: ", status.message()));
  }
  throw std::runtime_error(
      absl::StrCat("parallel: cannot start the workers: ", status.message()));
}

TaskBody NoCode() {
  return [](absl::string_view) -> absl::StatusOr<std::string> {
    return absl::InternalError("executor task without code");
  };
}

}  // namespace

ExecutorCore::ExecutorCore(PoolConfig config, TaskBody task,
                           bool reraise_interrupt)
    : reraise_interrupt_(reraise_interrupt),
      workers_full_(static_cast<size_t>(config.processes) *
                    PipelineDepth(config)) {
  if (task == nullptr) task = NoCode();
  if (InProcessMode()) {
    Hook(config);
    absl::StatusOr<std::unique_ptr<WorkerPool>> pool =
        WorkerPool::Start(std::move(task), std::move(config));
    if (!pool.ok()) ThrowStartError(pool.status());
    inline_pool_ = *std::move(pool);
    pool_ = inline_pool_.get();
    return;
  }
  wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) {
    throw std::runtime_error(
        absl::StrCat("parallel: eventfd: ", std::strerror(errno)));
  }
  thread_ = std::thread(
      [this, config = std::move(config), task = std::move(task)]() mutable {
        Loop(std::move(config), std::move(task));
      });
  loop_id_ = thread_.get_id();
  absl::Status status;
  {
    std::unique_lock<std::mutex> lock(mu_);
    started_cv_.wait(lock, [this] { return started_; });
    status = start_status_;
  }
  if (status.ok()) return;
  thread_.join();
  ThrowStartError(status);
}

ExecutorCore::~ExecutorCore() {
  // An owner left by an exception before shutting down: no hang, no throw.
  Shutdown(false, false, /*quiet=*/true);
}

std::shared_ptr<TaskState> ExecutorCore::Submit(PoolInput input) {
  std::vector<PoolInput> one;
  one.push_back(std::move(input));
  return std::move(SubmitAll(std::move(one)).front());
}

std::vector<std::shared_ptr<TaskState>> ExecutorCore::SubmitAll(
    std::vector<PoolInput> inputs, Latch* latch) {
  std::vector<std::shared_ptr<TaskState>> states;
  states.reserve(inputs.size());
  for (const PoolInput& input : inputs) {
    states.push_back(
        std::make_shared<TaskState>(this, failures_, input.label, latch));
  }
  Enqueue(states, std::move(inputs));
  return states;
}

void ExecutorCore::Feed(std::vector<PoolInput> inputs) {
  std::vector<std::shared_ptr<TaskState>> none(inputs.size());
  // Every task counted here ends through OnDone, after which the loop takes
  // the incoming tasks before it sleeps again.
  const bool wake = submitted_.load() - ended_.load() < workers_full_;
  Enqueue(none, std::move(inputs), wake);
}

void ExecutorCore::Enqueue(
    const std::vector<std::shared_ptr<TaskState>>& states,
    std::vector<PoolInput> inputs, bool wake) {
  submitted_.fetch_add(inputs.size());
  if (inline_pool_ != nullptr) {
    SubmitInline(states, inputs);
    return;
  }
  if (wake && inputs.size() == 1 && states.front() != nullptr &&
      SubmitDirectly(states.front(), inputs.front())) {
    return;
  }
  absl::Status refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (interrupt_signal_ != 0) {
      refused = absl::AbortedError(absl::StrCat(
          "the executor was stopped by signal ", interrupt_signal_));
    } else if (shutting_down_ || stopped_) {
      refused = absl::FailedPreconditionError("submitted after Shutdown()");
    } else {
      for (size_t i = 0; i < inputs.size(); ++i) {
        incoming_.push_back({states[i], std::move(inputs[i])});
      }
    }
  }
  if (!refused.ok()) {
    ended_.fetch_add(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (states[i] == nullptr) continue;  // fed: dropped
      states[i]->Resolve(
          refused.code() == absl::StatusCode::kFailedPrecondition
              ? absl::FailedPreconditionError(
                    absl::StrCat(inputs[i].label, ": ", refused.message()))
              : refused);
    }
    return;
  }
  if (wake && !inputs.empty()) Wake();
}

bool ExecutorCore::SubmitDirectly(const std::shared_ptr<TaskState>& state,
                                  PoolInput& input) {
  // Not from the loop's own thread (a callback that submits): it may hold
  // pool_mu_ then (a cancel at shutdown runs callbacks under it), and
  // try_lock on a mutex the thread holds is undefined.
  if (std::this_thread::get_id() == loop_id_) return false;
  std::unique_lock<std::mutex> pool_lock(pool_mu_, std::try_to_lock);
  if (!pool_lock.owns_lock() || pool_ == nullptr) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Tasks queued before this one go first; a refusal is the queue's.
    // (A Shutdown() from here on finds this task in the pool, as if the
    // loop had taken it from the queue.)
    if (!incoming_.empty() || interrupt_signal_ != 0 || shutting_down_ ||
        stopped_) {
      return false;
    }
  }
  state->set_index(first_state_ + states_.size());
  states_.push_back(state);
  pool_->Submit(std::move(input));  // may end it (on_done) at once
  // The loop polls the worker's socket already; it needs waking only for
  // what an event would not bring it (or to resolve a task that ended
  // here, on its own thread as every task).
  if (!pool_->SendNow() || !to_resolve_.empty()) Wake();
  return true;
}

void ExecutorCore::SubmitInline(
    const std::vector<std::shared_ptr<TaskState>>& states,
    std::vector<PoolInput>& inputs) {
  std::lock_guard<std::recursive_mutex> lock(inline_mu_);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (shut_down_) {
      ended_.fetch_add(1);
      if (states[i] == nullptr) continue;  // fed: dropped
      states[i]->Resolve(absl::FailedPreconditionError(
          absl::StrCat(inputs[i].label, ": submitted after Shutdown()")));
      continue;
    }
    if (states[i] != nullptr) {
      states[i]->set_index(first_state_ + states_.size());
    }
    states_.push_back(states[i]);
    inline_pool_->Submit(std::move(inputs[i]));  // runs it (on_done)
  }
}

void ExecutorCore::WaitForRoom(size_t limit) {
  auto unfinished = [this] { return submitted_.load() - ended_.load(); };
  if (unfinished() <= limit) return;
  std::unique_lock<std::mutex> lock(mu_);
  room_target_.store(limit / 2);
  room_waiters_.fetch_add(1);
  room_.wait(lock, [&] { return stopped_ || unfinished() <= limit / 2; });
  room_waiters_.fetch_sub(1);
}

void ExecutorCore::Kill(size_t index) {
  if (inline_pool_ != nullptr) return;  // every task ended in its Submit()
  {
    std::lock_guard<std::mutex> lock(mu_);
    kills_.push_back(index);
  }
  Wake();
}

void ExecutorCore::Wake() {
  if (wake_pending_.exchange(true)) return;
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

bool ExecutorCore::TakeRequests(WorkerPool& pool) {
  wake_pending_.store(false);
  uint64_t count;
  (void)!::read(wake_.get(), &count, sizeof(count));
  std::deque<Incoming> incoming;
  std::vector<size_t> kills;
  bool shutting_down;
  bool cancel_pending;
  bool kill_running;
  bool halt;
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming.swap(incoming_);
    kills.swap(kills_);
    shutting_down = shutting_down_;
    cancel_pending = cancel_pending_;
    kill_running = kill_running_;
    halt = halt_;
  }
  for (Incoming& task : incoming) {
    const size_t index = first_state_ + states_.size();
    if (task.state != nullptr) task.state->set_index(index);
    states_.push_back(task.state);
    pool.Submit(std::move(task.input));  // may end it (on_done) at once
  }
  for (size_t index : kills) pool.Cancel(index);
  if (!shutting_down) return true;
  if (halt) {
    pool.Kill();  // Finish() then reaps the workers and ends the rest
    return false;
  }
  if (cancel_pending && !cancelled_for_shutdown_) {
    cancelled_for_shutdown_ = true;
    // A cancel that ends a task may drop states from the front.
    for (size_t index = first_state_; index < first_state_ + states_.size();
         index = std::max(index + 1, first_state_)) {
      // A copy: a cancel may end it (on_done) and reset the slot. The pool
      // drops a pending one at once, rather than when a worker frees up;
      // the kill a running one's cancel queued then finds it ending.
      if (std::shared_ptr<TaskState> state = states_[index - first_state_]) {
        if (state->Cancel(kill_running)) pool.Cancel(index);
      }
    }
  }
  return pool.unfinished() > 0;
}

void ExecutorCore::OnDone(size_t index, const StepReport& report) {
  // Every task the pool has ends here once. A producer in WaitForRoom sees
  // the count either before it sleeps or through this notification (both
  // sides: atomic, then read the other's), which comes once the target is
  // reached — one wake-up per half queue, not one per task. (Its producer
  // is blocked: submitted_ does not move meanwhile.)
  ended_.fetch_add(1);
  if (room_waiters_.load() > 0 &&
      submitted_.load() - ended_.load() <= room_target_.load()) {
    std::lock_guard<std::mutex> lock(mu_);
    room_.notify_all();
  }
  // A fed task (no state) may have been dropped from the front already.
  if (index < first_state_) return;
  std::shared_ptr<TaskState> state = std::move(states_[index - first_state_]);
  while (!states_.empty() && states_.front() == nullptr) {
    states_.pop_front();
    ++first_state_;
  }
  if (state == nullptr) return;
  Ended ended{std::move(state), std::string(), false};
  switch (report.outcome) {
    case StepOutcome::kSucceeded:
      ended.raw = report.value;
      break;
    case StepOutcome::kFailed: {
      ExceptionInfo error = report.error.value_or(ExceptionInfo{});
      ended.raw = StatusWithInfo(CodeFor(error), error);
      break;
    }
    case StepOutcome::kHalted:
      ended.raw =
          absl::CancelledError(absl::StrCat(report.name, " was cancelled"));
      ended.cancelled = true;
      break;
    case StepOutcome::kInterrupted:
      ended.raw = absl::AbortedError(
          absl::StrCat(report.name, " was interrupted by a signal"));
      break;
  }
  // After an interrupt nothing may end before the signal is re-raised: a
  // caller waiting in Get() must not go on as if the run had ended.
  if (reraise_interrupt_ && pool_->interrupt_signal() != 0) {
    interrupted_.push_back(std::move(ended));
    return;
  }
  if (inline_pool_ != nullptr) {  // no loop: it ends inside its Submit()
    ended.state->Resolve(std::move(ended.raw), ended.cancelled);
    return;
  }
  to_resolve_.push_back(std::move(ended));
}

void ExecutorCore::UnlockAndResolve() {
  resolving_.swap(to_resolve_);
  pool_mu_.unlock();
  for (Ended& ended : resolving_) {
    // This thread's reference goes as soon as the task is resolved, not
    // after the others: a woken caller that drops its future (and the
    // result it copied) meanwhile leaves the state's last reference, and
    // the result's, here. (Correct either way; but absl's refcounts live
    // in Debian's uninstrumented shared libraries, so TSan sees the late
    // free here race the caller's reads.)
    const std::shared_ptr<TaskState> state = std::move(ended.state);
    state->Resolve(std::move(ended.raw), ended.cancelled);
  }
  resolving_.clear();
}

class ExecutorCore::LoopWait : public WaitHooks {
 public:
  explicit LoopWait(ExecutorCore* core) : core_(core) {}
  void BeforeWait() override { core_->UnlockAndResolve(); }
  void AfterWait() override { core_->pool_mu_.lock(); }

 private:
  ExecutorCore* const core_;
};

void ExecutorCore::Hook(PoolConfig& config) {
  config.on_done = [this](size_t index, const StepReport& report) {
    OnDone(index, report);
  };
  config.may_start = [this](size_t index, ClaimWord* claim) {
    if (index < first_state_) return true;  // fed: no state
    const std::shared_ptr<TaskState>& state = states_[index - first_state_];
    return state == nullptr || state->Give(claim);
  };
}

void ExecutorCore::Loop(PoolConfig config, TaskBody task) {
  Hook(config);
  absl::StatusOr<std::unique_ptr<WorkerPool>> started =
      WorkerPool::Start(std::move(task), std::move(config));
  {
    std::lock_guard<std::mutex> lock(mu_);
    started_ = true;
    start_status_ = started.status();
  }
  started_cv_.notify_all();
  if (!started.ok()) return;
  WorkerPool& pool = **started;
  pool_mu_.lock();
  pool_ = &pool;
  int signo = 0;
  {
    // The loop acts on SIGINT/SIGTERM/... for its whole length, not only
    // while it polls: a signal that lands between two turns (draining a
    // worker's output, say) is recorded and wakes the next one, where a
    // default disposition would end the process with that output unread.
    // Between turns the loop only does bounded work (sends never block).
    InterruptWait waiting;
    LoopWait wait(this);
    while (TakeRequests(pool) && pool.interrupt_signal() == 0) {
      pool.Turn(wake_.get(), absl::InfiniteFuture(), &wait);
    }
    // What ended before the stop ends now (after an interrupt, OnDone
    // holds back what ends from here on).
    UnlockAndResolve();
    pool_mu_.lock();
    signo = pool.interrupt_signal();
    Finished(pool, signo);  // the rest replayed, every worker gone
    pool_ = nullptr;
    UnlockAndResolve();
  }
  started->reset();  // the caller's signal dispositions are back
  std::deque<Incoming> late;  // came while the pool was stopping
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    interrupt_signal_ = signo;
    late.swap(incoming_);
    room_.notify_all();
  }
  ended_.fetch_add(late.size());
  for (Incoming& task : late) {
    if (task.state == nullptr) continue;  // fed: dropped
    task.state->Resolve(
        signo != 0 ? absl::AbortedError(absl::StrCat(
                         "the executor was stopped by signal ", signo))
                   : absl::FailedPreconditionError(absl::StrCat(
                         task.input.label, ": submitted after Shutdown()")));
  }
  if (signo == 0 || !reraise_interrupt_) return;
  ReraiseSignal(signo);
  // The caller's disposition let it live (a handler, or ignored).
  for (Ended& ended : interrupted_) {
    ended.state->Resolve(std::move(ended.raw), ended.cancelled);
  }
  interrupted_.clear();
}

void ExecutorCore::Finished(WorkerPool& pool, int signo) {
  report_ = std::move(pool.Finish());
  report_.interrupt_signal = signo;
}

void ExecutorCore::Shutdown(bool cancel_pending, bool kill_running,
                            bool quiet) {
  if (shut_down_) return;
  if (inline_pool_ != nullptr) {
    // Every task ended in its Submit(): nothing is pending or running.
    std::lock_guard<std::recursive_mutex> lock(inline_mu_);
    shut_down_ = true;
    if (halt_) inline_pool_->Kill();  // no onexit
    Finished(*inline_pool_, 0);
  } else {
    shut_down_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutting_down_ = true;
      cancel_pending_ = cancel_pending;
      kill_running_ = kill_running;
    }
    Wake();
    if (thread_.joinable()) thread_.join();
  }
  std::vector<ExceptionInfo> failures;
  {
    std::lock_guard<std::mutex> lock(failures_->mu);
    failures_->closed = true;
    failures.swap(failures_->failures);
  }
  if (!failures.empty() && !quiet) throw BackgroundFailure(std::move(failures));
}

void ExecutorCore::Halt() {
  if (shut_down_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    halt_ = true;
  }
  Shutdown(true, true, /*quiet=*/true);
}

}  // namespace internal
}  // namespace parallel
