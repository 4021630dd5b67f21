// The engine behind BackgroundTaskRunner and RunTasksInProcessPool: a pool of
// pre-forked worker processes that run encoded inputs one at a time.
//
// Each worker has a socket to the parent and one capture file for all its
// output. For every input it reports a result record and the byte range of
// its capture file that the input wrote, so output is grouped per input (not
// per worker, as chromite does) and replayed in Put() order, the earliest
// unfinished input streamed live. A worker that dies — crash, exit, kill,
// timeout — fails only the input it was running and is replaced.
//
// Thread-safety: one pool per owner, used from one thread.

#ifndef PARALLEL_INTERNAL_WORKER_POOL_H_
#define PARALLEL_INTERNAL_WORKER_POOL_H_

#include <poll.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallel/internal/child.h"
#include "parallel/internal/interrupt.h"
#include "parallel/internal/record.h"
#include "parallel/step.h"

namespace parallel {
namespace internal {

// Runs in a worker: decodes the arguments and runs the task; returns the
// encoded result ("" for void) or a non-OK status. May throw.
using TaskBody = std::function<absl::StatusOr<std::string>(absl::string_view)>;

struct PoolConfig {
  int processes = 1;  // >= 1
  bool halt_on_error = false;
  bool keep_values = false;
  absl::Duration timeout = absl::InfiniteDuration();
  absl::Duration silent_timeout = absl::InfiniteDuration();
  int output_fd = 1;
  std::string temp_dir;  // resolved already
  std::function<void()> onexit;
};

class WorkerPool {
 public:
  // Validates the configuration and the temp dir, then forks the workers.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Start(TaskBody task,
                                                           PoolConfig config);
  ~WorkerPool();  // kills and reaps whatever still runs
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Hands one input to a worker with room, first running the event loop until
  // one has room (the backpressure: never more than one input waits
  // flight per worker beyond the one it runs). After a halt or an interrupt the
  // input is recorded, not run.
  void Put(std::string encoded_args, std::string label);

  // Lets every worker finish its inputs and run onexit, replays all output in
  // Put() order (onexit output after it, worker by worker), and reports one
  // StepReport per input, plus one per worker whose onexit failed.
  // Idempotent: later calls return the same report.
  const RunReport& Finish();

  // Kills every worker now; inputs not yet done are reported as halted and
  // their output dropped. Then Finish() returns at once.
  void Kill();

 private:
  struct Worker;
  struct Input;
  // Output of a worker's onexit, replayed after all inputs, by worker slot.
  struct OnexitOutput;
  explicit WorkerPool(TaskBody task, PoolConfig config);

  absl::Status StartWorker(size_t slot);
  void Dispatch(size_t worker, size_t input);
  // The worker's front input has started (now).
  void Started(size_t worker, absl::Time now);
  // Hands waiting inputs to workers with room; false if some still wait.
  bool DispatchWaiting();
  // With no live worker left, the waiting inputs fail.
  void FailWaitingIfNoWorker();
  // After a halt or interrupt: the waiting inputs will not run.
  void DropWaiting();
  // Whether the worker running `input` has another input queued behind it.
  bool QueuedBehind(size_t input) const;
  // One turn of the loop: wait for events (at most until the next deadline or
  // live-stream tick), handle them, replay what can be.
  void Turn();
  void ReadFrom(size_t worker);
  void HandleRecord(size_t worker, const Record& record);
  void WorkerEnded(size_t worker);
  void Fail(Input& input, absl::string_view type, std::string message,
            std::string traceback = "");
  void Halt();
  void BeginKill(size_t worker, KillReason reason);
  void CheckDeadlines(absl::Time now);
  void Replay();
  std::string Who(size_t worker) const;
  size_t FreeWorker() const;
  bool AnyWorkerAlive() const;

  TaskBody task_;
  PoolConfig config_;
  // Catches SIGINT/SIGTERM/SIGHUP for the pool's lifetime; they are acted on
  // only while the pool waits (see interrupt.h).
  InterruptScope interrupts_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Input> inputs_;
  std::deque<size_t> waiting_;  // inputs not with any worker, in order
  size_t next_replay_ = 0;
  bool inline_ = false;  // the test seam: tasks run in Put(), here
  bool halted_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  bool replay_broken_ = false;
  int interrupt_signal_ = 0;
  std::vector<OnexitOutput> onexit_outputs_;
  std::vector<struct pollfd> poll_fds_;  // scratch for Turn
  std::vector<size_t> poll_owners_;      // scratch for Turn
  std::vector<StepReport> onexit_failures_;
  RunReport report_;
  int dev_null_ = -1;
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_WORKER_POOL_H_
