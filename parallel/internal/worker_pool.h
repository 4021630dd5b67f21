// The engine under ExecutorCore (executor_state.h), and so under
// ProcessPoolExecutor, BackgroundTaskRunner and RunTasksInProcessPool: a pool
// of pre-forked worker processes that run encoded inputs one at a time, as a
// client of the supervisor (supervisor.h).
//
// Each input gets its own output pipe(s), passed to the worker with the input
// (SCM_RIGHTS), so output is grouped per input by construction (not per
// worker, as chromite does) and replayed in Submit() order by the replayer, the
// earliest unfinished input streamed live. A worker tells the parent when it
// starts an input (kStarted): only an input that really started can fail
// when its worker dies; inputs it had not started go to another worker. A
// dead worker is replaced.
//
// Its owner (ExecutorCore's thread) queues inputs with Submit(), drives
// Turn(), and hears of each input's end through on_done. Inputs may name
// their own code (an entry point valid in every worker, or a body that gets
// a fresh process of its own), their own timeout, and may be cancelled.
//
// Thread-safety: one pool per owner, used by one thread at a time: the one
// driving Turn(), or, while it waits (WaitHooks), another under the owner's
// lock (Submit, SendNow).

#ifndef PARALLEL_INTERNAL_WORKER_POOL_H_
#define PARALLEL_INTERNAL_WORKER_POOL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallel/internal/claims.h"
#include "parallel/options.h"
#include "parallel/step.h"

namespace parallel {
namespace internal {

class WaitHooks;  // supervisor.h

// Runs in a worker: decodes the arguments and runs the task; returns the
// encoded result ("" for void) or a non-OK status. May throw.
using TaskBody = std::function<absl::StatusOr<std::string>(absl::string_view)>;

// A function every worker has at the same address (workers are forks of the
// caller): an input that names one runs it instead of the pool's task.
using TaskEntry = absl::StatusOr<std::string> (*)(absl::string_view args);

// One input for the pool.
struct PoolInput {
  std::string args;  // encoded
  std::string label;
  // 0: the pool's task; else a TaskEntry's address.
  uint64_t entry = 0;
  // Set: runs in a process forked for it alone (its state as the pool forks
  // it), which ends with the input; counts against `processes`.
  TaskBody own_body;
  // Tighter than the pool's timeout for this input.
  absl::Duration timeout = absl::InfiniteDuration();
};

// The pool's options, with temp_dir already resolved.
struct PoolConfig : ProcessOptions {
  int processes = 1;  // >= 1
  bool halt_on_error = false;
  bool keep_values = false;
  bool tag_lines = false;
  // Replay each input's output when it ends, in the order they end, instead
  // of in Submit() order (none is then streamed live).
  bool replay_in_completion_order = false;
  std::function<void()> onexit;
  // Runs in each worker before its first input, captured with that input;
  // if it throws, the input fails with its exception and the worker is
  // replaced; after kMaxInitializerFailures such failures every waiting and
  // later input fails with it.
  std::function<void()> initializer;
  // Inputs with a worker at once: the one it runs and those waiting in its
  // socket (at most kLanes). 1 sends an input only to an idle worker. 0:
  // kLanes, or 1 with halt_on_error. However deep, a worker that runs out
  // of inputs takes those another holds but has not started (withdrawn
  // there through their claims, exactly), so none waits behind a long
  // input while a worker idles.
  int pipeline_depth = 0;
  // Replace a worker after this many inputs (0: never), or when its
  // resident set is over this many bytes after an input (0: never).
  int max_inputs_per_worker = 0;
  int64_t max_worker_rss_bytes = 0;
  // Called as each input ends (value, failure, halt, cancel), on the thread
  // using the pool at the time — the one driving Turn(), or one calling
  // Submit()/SendNow() under the owner's lock (an input refused at once);
  // before its output is replayed when that waits for an earlier input.
  std::function<void(size_t index, const StepReport& report)> on_done;
  // Called just before an input goes to a worker (on the thread using the
  // pool, as on_done): false drops it (it ends as kHalted, its on_done
  // called) — a cancelled input never starts.
  // `claim` is the input's claim word (claims.h; null for a process of its
  // own, or if the claim words could not be mapped): until the worker starts
  // it, ClaimWithdraw(claim, index) keeps it from starting (it then ends as
  // kHalted). The word is the input's until it ends or may_start is called
  // for it again (it moved to another worker).
  std::function<bool(size_t index, ClaimWord* claim)> may_start;
  // Keep nothing of an input once it ended (on_done has its report), so
  // that a long-lived pool's memory does not grow with the inputs it ran;
  // Finish() then reports only onexit failures.
  bool forget_ended = false;
};

inline constexpr int kMaxInitializerFailures = 3;

// Output pipe pairs per worker: one for the input it runs, one for each
// input waiting in its socket. Eight: with trivial inputs the parent's
// wake-ups set the pace at 2 (ProcessPoolExecutor::Map measured 36-40 us per
// task at 2, 18-23 at 8, tools/bench/executor_vs_python.sh).
inline constexpr uint32_t kLanes = 8;

// Inputs a pooled worker holds at once under `config` (pipeline_depth,
// resolved): with `processes`, how many the pool can hand out before one
// ends.
size_t PipelineDepth(const PoolConfig& config);

class WorkerPool {
 public:
  // Validates the configuration and the temp dir, then forks the workers (or,
  // under the in-process test seam, runs every input inline in Submit()).
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Start(TaskBody task,
                                                           PoolConfig config);
  virtual ~WorkerPool() = default;  // kills and reaps whatever still runs

  // Queues an input without waiting; returns its index (Submit order is
  // replay order). The owner drives Turn(). After a halt or an interrupt
  // the input is recorded, not run.
  virtual size_t Submit(PoolInput input) = 0;
  // Sends what can go to workers, then waits for one event (or `wake_fd`
  // readable, or `wake_at`) and handles it. `hooks`: Supervisor::Turn's
  // (supervisor.h) — they release the owner's lock, under which its other
  // threads call Submit() and SendNow() while this one waits.
  virtual void Turn(int wake_fd, absl::Time wake_at,
                    WaitHooks* hooks = nullptr) = 0;
  // What Turn() does before it waits, alone: sends the inputs that can go
  // to already running workers now (it starts no process). False if the
  // pool needs a Turn() before an event would bring one: an input no
  // running worker could take (or that needs a process of its own), a send
  // its socket did not take whole, or the pool is stopping. (For a thread
  // other than the one driving Turn(), which it then wakes.)
  virtual bool SendNow() = 0;
  // Ends an input that has not ended: dropped if no worker has it,
  // withdrawn if its worker has not started it (the worker skips it and goes
  // on), else its worker is killed (and replaced, the inputs it held but had
  // not started going to others). It ends as kHalted, output dropped.
  virtual void Cancel(size_t index) = 0;
  // Inputs submitted that have not ended.
  virtual size_t unfinished() const = 0;
  // The signal that interrupted the pool, or 0.
  virtual int interrupt_signal() const = 0;

  // Lets every worker finish its inputs and run onexit, replays all output in
  // Submit() order (onexit output after it, worker by worker), and reports one
  // StepReport per input, plus one per worker whose onexit failed.
  // Idempotent: later calls return the same object (which the owner may
  // have moved from).
  virtual RunReport& Finish() = 0;

  // Kills every worker now; inputs not yet done are reported as halted and
  // their output dropped. Then Finish() returns at once.
  virtual void Kill() = 0;
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_WORKER_POOL_H_
