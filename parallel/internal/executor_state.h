// The untyped machinery under executor.h and task_runner.h: one TaskState
// per submitted task (shared by its Future and the executor's thread), the
// ExecutorCore that owns that thread and the worker pool — the one pool of
// the library: ProcessPoolExecutor, BackgroundTaskRunner and
// RunTasksInProcessPool are each a thin layer over an ExecutorCore — and the
// range AsCompleted returns.
// (executor_core.cc has ExecutorCore; executor_state.cc the rest.)
//
// A task's phase moves kPending → kGiven (a worker has it) → kDone, under
// the state's mutex; a cancel and the task's end race only there, so exactly
// one of them resolves it.
//
// Thread-safety: TaskState and ExecutorCore are thread-safe;
// CompletionRange is used by one thread.

#ifndef PARALLEL_INTERNAL_EXECUTOR_STATE_H_
#define PARALLEL_INTERNAL_EXECUTOR_STATE_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/failure.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/worker_pool.h"
#include "parallel/step.h"

namespace parallel {

namespace internal {

class ExecutorCore;

// Where callbacks that threw are kept until Shutdown() raises them. Once
// closed (after Shutdown), a callback registered on a done future runs
// unguarded: its exception reaches the caller of OnDone.
struct CallbackFailures {
  std::mutex mu;
  std::vector<ExceptionInfo> failures;
  bool closed = false;
};

// A status that carries `info`, and `info` read back (GetExceptionInfo).
absl::Status StatusWithInfo(absl::StatusCode code, const ExceptionInfo& info);
std::optional<ExceptionInfo> InfoFromStatus(const absl::Status& status);
// A result that could not be decoded: kUnknown, parallel::CorruptResult.
absl::Status CorruptValue(const absl::Status& decode_error);

// Counts tasks down to zero: one wake-up for a whole Map.
class Latch {
 public:
  explicit Latch(size_t count) : left_(count) {}
  void CountDown();
  void Wait();

 private:
  std::mutex mu_;
  std::condition_variable zero_;
  size_t left_;
};

class TaskState {
 public:
  using Raw = absl::StatusOr<std::string>;  // the encoded value, or why not
  using Callback = std::function<void(const Raw&)>;

  // `latch`, if any, is counted down once as the task ends (after which
  // the task never touches it).
  TaskState(ExecutorCore* core, std::shared_ptr<CallbackFailures> failures,
            std::string name, Latch* latch = nullptr)
      : core_(core),
        failures_(std::move(failures)),
        name_(std::move(name)),
        latch_(latch) {}

  bool done() const;
  bool cancelled() const;
  bool Cancel(bool kill_if_running);
  bool WaitFor(absl::Duration timeout) const;
  const Raw& Wait() const;
  void AddCallback(Callback callback);

  // The executor's thread, as a worker is about to get the task: false if
  // it ended already (cancelled). `claim`: the task's claim word while it
  // waits in the worker's socket (claims.h), or null — a Cancel withdraws
  // it there, exactly, as long as the worker has not started it.
  bool Give(ClaimWord* claim);
  // Ends the task (unless it ended already); runs the callbacks on the
  // calling thread. False if it had ended.
  bool Resolve(Raw raw, bool cancelled = false);

  void set_index(size_t index) { index_ = index; }
  const std::string& name() const { return name_; }

 private:
  enum class Phase { kPending, kGiven, kDone };
  // Runs the queued callbacks, in order, until none is left.
  void RunCallbacks();

  ExecutorCore* const core_;  // outlives every undone task
  const std::shared_ptr<CallbackFailures> failures_;
  const std::string name_;
  Latch* const latch_;
  std::atomic<size_t> index_{0};  // in the pool; set before any Give
  mutable std::mutex mu_;
  mutable std::condition_variable done_;  // phase_ became kDone
  Phase phase_ = Phase::kPending;
  ClaimWord* claim_ = nullptr;  // while kGiven, if it has one
  bool cancelled_ = false;
  Raw raw_ = absl::UnknownError("not done");
  std::vector<Callback> callbacks_;
  // A thread is running callbacks_: new ones join its queue.
  bool running_callbacks_ = false;
};

class ExecutorCore {
 public:
  // Starts the thread and waits for its workers. Throws
  // std::invalid_argument / std::runtime_error.
  // `task`: what an input that names no code of its own runs (the task
  // runners' one task); the executor's inputs always name theirs.
  // `reraise_interrupt`: after SIGINT/SIGTERM/..., the thread re-raises the
  // signal itself once the pool has stopped (the executor: a caller blocked
  // in Get() must not go on); false leaves that to the owner, through
  // report().interrupt_signal (the task runners re-raise it in Wait()).
  // Under the in-process test seam (in_process.h) there is no thread: every
  // input runs inside the Submit() that brings it, on the submitting thread.
  explicit ExecutorCore(PoolConfig config, TaskBody task = nullptr,
                        bool reraise_interrupt = true);
  ~ExecutorCore();  // Shutdown(kWait, quiet) unless shut down already

  // The index the next Submit will get (for its default name).
  size_t next_index() const { return submitted_.load(); }
  std::shared_ptr<TaskState> Submit(PoolInput input);
  // Submit() of each, under one lock and with one wake-up of the thread.
  // `latch`: as TaskState's.
  std::vector<std::shared_ptr<TaskState>> SubmitAll(
      std::vector<PoolInput> inputs, Latch* latch = nullptr);
  // Tasks whose ends only report() tells (the task runners): no TaskState
  // and no future each, nothing per task beyond what the pool keeps; not
  // cancelled by Shutdown(kCancelPending) (Halt() ends them). Refused after
  // Shutdown() or an interrupt: dropped.
  // While at least as many tasks are unfinished as the workers can hold at
  // once (processes × PipelineDepth), a fed task could not go to a worker
  // before one of them ends, which wakes the thread anyway: it is queued
  // without a wake-up of its own (a producer faster than the workers then
  // costs the thread one wake-up per worker reply, not one per task).
  void Feed(std::vector<PoolInput> inputs);
  // Blocks while more than `limit` submitted tasks have not ended, then
  // until no more than limit / 2 have (one wake-up per half), or the loop
  // ended: back-pressure for a producer that must not queue without bound.
  void WaitForRoom(size_t limit);
  // Asks the thread to kill a task a worker has (or to drop it).
  void Kill(size_t index);
  // Idempotent; the first call joins the thread and then throws a
  // BackgroundFailure if any callback threw (unless `quiet`).
  // `cancel_pending`: tasks no worker has are cancelled; `kill_running`:
  // those that run too.
  void Shutdown(bool cancel_pending, bool kill_running, bool quiet);
  // Shutdown at once: every worker killed, tasks not done end halted
  // (cancelled), no onexit runs. Raises nothing.
  void Halt();
  // After Shutdown() or Halt(): the pool's final report — every task's
  // unless PoolConfig::forget_ended, onexit failures, the interrupt signal.
  const RunReport& report() const { return report_; }

 private:
  struct Incoming {
    std::shared_ptr<TaskState> state;  // null: fed
    PoolInput input;
  };
  struct Ended {
    std::shared_ptr<TaskState> state;
    TaskState::Raw raw;
    bool cancelled;
  };
  void Loop(PoolConfig config, TaskBody task);
  // The pool's callbacks into the core (on_done, may_start).
  void Hook(PoolConfig& config);
  // Takes the pool's final report, with the signal that stopped it.
  void Finished(WorkerPool& pool, int signo);
  // SubmitAll and Feed: `states[i]` is null for a fed input.
  // `wake`: false if the thread need not be woken for these (Feed).
  void Enqueue(const std::vector<std::shared_ptr<TaskState>>& states,
               std::vector<PoolInput> inputs, bool wake = true);
  // A lone task from a thread other than the loop's, while the loop waits
  // for an event: given to the pool (and sent to an idle worker) here, so
  // that the round trip is caller → worker → loop → caller, not through
  // the loop first. False (nothing done) if the loop is busy or tasks wait
  // in incoming_ before it: the queue's way then.
  bool SubmitDirectly(const std::shared_ptr<TaskState>& state,
                      PoolInput& input);
  // The in-process seam's Enqueue: runs each input now, here.
  void SubmitInline(const std::vector<std::shared_ptr<TaskState>>& states,
                    std::vector<PoolInput>& inputs);
  // The thread's work between turns: new tasks, kills, shutdown. False
  // when the loop should end.
  bool TakeRequests(WorkerPool& pool);
  void Wake();
  void OnDone(size_t index, const StepReport& report);
  // pool_mu_ is held: releases it, then resolves the tasks that ended
  // (OnDone) — with the lock free, so that a caller woken by its result
  // can submit the next task straight to a worker (SubmitDirectly), and
  // callbacks never run under it.
  void UnlockAndResolve();
  class LoopWait;  // the loop's WaitHooks

  const bool reraise_interrupt_;
  const size_t workers_full_;  // processes × PipelineDepth (Feed)
  UniqueFd wake_;  // an eventfd the loop polls
  std::atomic<size_t> submitted_{0};
  // Tasks ended (OnDone, or refused at Submit), and producers blocked in
  // WaitForRoom until no more than room_target_ are unfinished; room_ is
  // notified under mu_ only when there are some and the target is reached.
  std::atomic<size_t> ended_{0};
  std::atomic<int> room_waiters_{0};
  std::atomic<size_t> room_target_{0};
  std::condition_variable room_;
  std::mutex mu_;
  std::deque<Incoming> incoming_;
  std::vector<size_t> kills_;
  std::condition_variable started_cv_;
  bool started_ = false;
  absl::Status start_status_;
  bool shutting_down_ = false;
  bool stopped_ = false;  // the loop ended
  bool cancel_pending_ = false;
  bool kill_running_ = false;
  bool halt_ = false;
  int interrupt_signal_ = 0;
  std::atomic<bool> wake_pending_{false};
  const std::shared_ptr<CallbackFailures> failures_ =
      std::make_shared<CallbackFailures>();
  bool shut_down_ = false;  // Shutdown() ran (caller's thread)
  // Held by the loop's thread except while it waits for an event (Turn's
  // ppoll): guards the pool and the members below, down to to_resolve_
  // (SubmitDirectly takes it, never waiting for it, from other threads).
  // Taken before mu_, never after.
  std::mutex pool_mu_;
  // The state of each pool index from `first_state_` on (reset as each
  // ends, dropped from the front), and whether a kCancelPending/kKillRunning
  // shutdown cancelled them.
  std::deque<std::shared_ptr<TaskState>> states_;
  size_t first_state_ = 0;
  bool cancelled_for_shutdown_ = false;
  WorkerPool* pool_ = nullptr;  // while the loop runs it
  // Tasks that ended after an interrupt: resolved only if the re-raised
  // signal did not end the process.
  std::vector<Ended> interrupted_;
  // Tasks that ended, resolved as the loop next releases pool_mu_ (before
  // its wait), on its thread; `resolving_`: the loop's, outside the lock.
  std::vector<Ended> to_resolve_;
  std::vector<Ended> resolving_;
  RunReport report_;  // set as the loop ends
  // The in-process seam: the pool, run on submitting threads one at a time
  // (recursive: a callback may submit).
  std::unique_ptr<WorkerPool> inline_pool_;
  std::recursive_mutex inline_mu_;
  std::thread thread_;
  std::thread::id loop_id_;  // thread_'s, set before the constructor returns
};

// AsCompleted's range: indices as their futures end.
class CompletionRange {
 public:
  explicit CompletionRange(const std::vector<TaskState*>& states);

  class iterator {
   public:
    using value_type = size_t;
    using difference_type = std::ptrdiff_t;
    using reference = size_t;
    using pointer = void;
    using iterator_category = std::input_iterator_tag;
    size_t operator*() const { return range_->current_; }
    iterator& operator++() {
      range_->Advance();
      return *this;
    }
    bool operator==(const iterator& other) const {
      return (range_ == nullptr || range_->ended()) ==
             (other.range_ == nullptr || other.range_->ended());
    }
    bool operator!=(const iterator& other) const { return !(*this == other); }

   private:
    friend class CompletionRange;
    explicit iterator(CompletionRange* range) : range_(range) {}
    CompletionRange* range_;
  };
  iterator begin() {
    if (!begun_) {
      begun_ = true;
      Advance();
    }
    return iterator(this);
  }
  iterator end() { return iterator(nullptr); }

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable ready;
    std::deque<size_t> done;
  };
  void Advance();
  bool ended() const { return taken_ > total_; }

  std::shared_ptr<Queue> queue_;
  size_t total_;
  size_t taken_ = 0;  // indices handed out, plus one once past the last
  size_t current_ = 0;
  bool begun_ = false;
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_EXECUTOR_STATE_H_
