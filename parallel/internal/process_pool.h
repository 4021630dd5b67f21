// The pool of worker processes behind worker_pool.h, as a client of the
// supervisor. process_pool.cc has the inputs' side (queueing, dispatch,
// ending, cancelling, finishing); process_pool_workers.cc the workers' side
// (starting, what they say, their end, recycling).
//
// Thread-safety: used by one thread at a time (worker_pool.h).

#ifndef PARALLEL_INTERNAL_PROCESS_POOL_H_
#define PARALLEL_INTERNAL_PROCESS_POOL_H_

#include <signal.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "parallel/failure.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/judge.h"
#include "parallel/internal/record.h"
#include "parallel/internal/replayer.h"
#include "parallel/internal/result.h"
#include "parallel/internal/send_queue.h"
#include "parallel/internal/supervisor.h"
#include "parallel/internal/worker_main.h"
#include "parallel/internal/worker_pool.h"

namespace parallel {
namespace internal {

// A worker slot that dies this many times in a row before starting anything
// is not replaced again (a broken fork, never a respawn loop).
inline constexpr int kMaxBarrenStarts = 3;

class ProcessPool : public WorkerPool, public SupervisorClient {
 public:
  ProcessPool(TaskBody task, PoolConfig config);

  absl::Status StartWorkers();
  size_t Submit(PoolInput input) override;
  void Turn(int wake_fd, absl::Time wake_at, WaitHooks* hooks) override;
  bool SendNow() override;
  void Cancel(size_t index) override;
  size_t unfinished() const override { return unfinished_; }
  int interrupt_signal() const override {
    return supervisor_.interrupt_signal();
  }
  RunReport& Finish() override;
  void Kill() override;
  void OnEnded(size_t slot, const ProcessExit& exit, KillReason why) override;
  void OnReadable(size_t slot) override { ReadFrom(slot); }
  void OnWritable(size_t slot) override { SendQueued(slot); }

 private:
  // A pipe pair the worker reuses (worker_main.h): the parent's read ends;
  // invalid until the first input on it, or after it was retired.
  struct Lane {
    UniqueFd out;
    UniqueFd err;  // only when !combine_stderr
  };
  // An input sent to a worker, on one of its lanes.
  struct Held {
    size_t index;
    uint32_t lane;
    uint32_t claim;  // its claim word's index, or kNoClaim
    // Withdrawn for an idle worker (Steal): this one skips it, and its
    // kDone only frees the lane.
    bool stolen = false;
  };
  struct Worker {
    UniqueFd socket;  // the parent's end, non-blocking
    Lane lanes[kLanes];
    std::string inbox;
    // Records (and lane pipes) not yet sent: those of one dispatching pass
    // go in one write, one wake-up of the worker (FlushSends); what its
    // socket cannot take now waits for room (OnWritable), never blocking
    // the loop on a worker busy with a long task.
    SendQueue outbox;
    // Inputs sent to it, oldest first; the front one runs once started.
    std::deque<Held> assigned;
    bool front_started = false;
    ChildResult result;  // records of the running input
    bool finish_sent = false;
    bool onexit_started = false;
    bool ever_started = false;  // since it was forked
    int barren_starts = 0;      // deaths in a row before starting anything
    bool one_shot = false;      // forked for one input's own body
    bool initializer_failed = false;
    int inputs_done = 0;
    // The failure of the input of its last kDone, if it failed.
    std::optional<ExceptionInfo> last_error;
  };
  struct Input {
    // kWaiting: with no worker; kQueued: sent, not started; kRunning; kDone.
    enum State { kWaiting, kQueued, kRunning, kDone };
    State state = kWaiting;
    std::string args;  // kept until it starts, to resend if need be
    uint64_t entry = 0;
    TaskBody own_body;
    absl::Duration timeout = absl::InfiniteDuration();
    bool cancelled = false;
    StepReport report;
    absl::Time started;
  };

  // process_pool_workers.cc
  absl::Status StartWorker(size_t slot, const TaskBody* own_body = nullptr);
  size_t OneShotSlot();
  void ReadFrom(size_t slot);
  void HandleRecord(size_t slot, const Record& record);
  void HandleDone(size_t slot, const Record& record);
  void HandleOnexit(size_t slot, RecordKind kind);
  // After an input: replaces the worker if it ran its quota or grew too big.
  void MaybeRecycle(size_t slot);
  // A worker whose initializer threw has ended.
  void InitializerFailed();
  void OwnFds(std::vector<int>* fds) const;

  // process_pool.cc
  size_t Add(PoolInput input);
  // Sends the input to the worker on `lane` (FreeLane), with its claim
  // word's index or kNoClaim.
  void Dispatch(size_t slot, size_t input, uint32_t lane, uint32_t claim);
  uint32_t FreeLane(const Worker& worker) const;
  // Sends a waiting input to the pooled worker, on a free lane, with a
  // claim word (unless may_start refuses it).
  void SendTo(size_t slot, size_t index);
  // `may_fork`: false leaves an input that needs a process of its own
  // waiting (SendNow).
  bool DispatchWaiting(bool may_fork = true);
  // DispatchWaiting without the stealing and the sending.
  bool DispatchQueued(bool may_fork);
  // Writes every worker's outbox.
  void FlushSends();
  // Writes what the worker's socket takes of its outbox now, and has the
  // supervisor say when it takes more; a send that fails kills the worker.
  void SendQueued(size_t slot);
  // With claims, once nothing waits: an idle worker takes the newest input
  // another worker holds but has not started (withdrawn there, exactly), so
  // that a deep pipeline never leaves a worker idle behind a long task.
  void Steal();
  // An input a worker held but never started is no longer its: back to
  // kWaiting, or ended if cancelled meanwhile. True if it is to be sent
  // again.
  bool TakeBack(size_t index);
  // Inputs the worker holds that it will run (not stolen from it).
  static size_t Live(const Worker& worker);
  // Whether the pooled worker may be sent one more input.
  bool MayTake(size_t slot, bool idle_ok) const;
  void FailWaitingIfNoWorker();
  void DropWaiting();
  // Ends an input that never started (its output, if any, dropped unless a
  // failure explains it).
  void EndUnstarted(size_t index, StepOutcome outcome,
                    std::optional<ExceptionInfo> error = std::nullopt);
  // Every end of an input goes through here.
  void MarkDone(size_t index);
  // The pooled worker with room and the fewest inputs; an idle one only if
  // `idle_ok`. workers_.size() if none.
  size_t FreeWorker(bool idle_ok) const;
  // Inputs with workers; workers (one-shot ones too) with inputs.
  size_t Busy() const;
  size_t BusyProcesses() const;
  bool AnyWorkerAlive() const;
  bool stopped() const {
    return supervisor_.stopping() != KillReason::kNone || killed_;
  }
  // How a unit ended: a clean end (the worker's kDone) or its process's.
  struct UnitEnd {
    ProcessExit exit = ProcessExit::Exited(0);
    KillReason why = KillReason::kNone;
    // The worker saw the input's lane empty at its end (no last read).
    bool pipes_empty = false;
  };
  // Judges the unit (input index, or an onexit's) the worker ran and fills
  // its report; `timeout` is the unit's own (the pool's applies too).
  void Conclude(size_t slot, size_t unit, StepReport& report,
                absl::Duration timeout, const UnitEnd& end);
  void SendFinish();

  TaskBody task_;
  const PoolConfig config_;
  const size_t depth_;  // inputs per worker at once
  // A claim word per pooled worker lane.
  ClaimBoard claims_;
  const WorkerSpec spec_;
  Replayer replayer_;
  Supervisor supervisor_;
  std::vector<Worker> workers_;  // by supervisor slot; pooled ones first
  // Inputs from `first_input_` on (with forget_ended, the earlier ones
  // ended); a deque: growing never moves them.
  std::deque<Input> inputs_;
  size_t first_input_ = 0;
  Input& input_at(size_t index) { return inputs_[index - first_input_]; }
  std::deque<size_t> waiting_;  // inputs not with any worker, in order
  size_t unfinished_ = 0;
  // Onexit units by worker slot (added at Finish, after every input).
  std::vector<size_t> onexit_units_;
  std::vector<StepReport> onexit_reports_;
  int initializer_failures_ = 0;
  std::optional<ExceptionInfo> initializer_error_;  // the last one
  bool finishing_ = false;
  bool finished_ = false;
  bool killed_ = false;
  RunReport report_;
  sigset_t signals_to_reset_;
  const absl::Time start_time_ = absl::Now();
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_PROCESS_POOL_H_
