// The engine behind BackgroundTaskRunner and RunTasksInProcessPool: a pool of
// pre-forked worker processes that run encoded inputs one at a time, as a
// client of the supervisor (supervisor.h).
//
// Each input gets its own output pipe(s), passed to the worker with the input
// (SCM_RIGHTS), so output is grouped per input by construction (not per
// worker, as chromite does) and replayed in Put() order by the replayer, the
// earliest unfinished input streamed live. A worker tells the parent when it
// starts an input (kStarted): only an input that really started can fail
// when its worker dies; inputs it had not started go to another worker. A
// dead worker is replaced.
//
// Thread-safety: one pool per owner, used from one thread.

#ifndef PARALLEL_INTERNAL_WORKER_POOL_H_
#define PARALLEL_INTERNAL_WORKER_POOL_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallel/options.h"
#include "parallel/step.h"

namespace parallel {
namespace internal {

// Runs in a worker: decodes the arguments and runs the task; returns the
// encoded result ("" for void) or a non-OK status. May throw.
using TaskBody = std::function<absl::StatusOr<std::string>(absl::string_view)>;

// The pool's options, with temp_dir already resolved.
struct PoolConfig : ProcessOptions {
  int processes = 1;  // >= 1
  bool halt_on_error = false;
  bool keep_values = false;
  bool tag_lines = false;
  std::function<void()> onexit;
};

class WorkerPool {
 public:
  // Validates the configuration and the temp dir, then forks the workers (or,
  // under the in-process test seam, runs every input inline in Put()).
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Start(TaskBody task,
                                                           PoolConfig config);
  virtual ~WorkerPool() = default;  // kills and reaps whatever still runs

  // Hands one input to a worker with room, first running the event loop
  // until one has room (never more than one input waits per worker beyond
  // the one it runs). After a halt or an interrupt the input is recorded,
  // not run.
  virtual void Put(std::string encoded_args, std::string label) = 0;

  // Lets every worker finish its inputs and run onexit, replays all output in
  // Put() order (onexit output after it, worker by worker), and reports one
  // StepReport per input, plus one per worker whose onexit failed.
  // Idempotent: later calls return the same report.
  virtual const RunReport& Finish() = 0;

  // Kills every worker now; inputs not yet done are reported as halted and
  // their output dropped. Then Finish() returns at once.
  virtual void Kill() = 0;
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_WORKER_POOL_H_
