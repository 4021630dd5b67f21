// The worker's side of the task runners' pool (worker_pool.h): the loop a
// pre-forked worker runs, and the pool's in-process stand-in for the test
// seam (in_process.h).
//
// Protocol on the worker's socket (record.h): the parent sends kInput
// (id, args) or kFinish, each with the output pipe(s) of that input attached
// (SCM_RIGHTS); the worker points fds 1 and 2 at them, answers kStarted(id),
// runs the task (or onexit), points 1 and 2 back at /dev/null — so the
// parent sees the pipe's end — and answers kValue/kFailure then kDone(id).
//
// Thread-safety: WorkerMain runs in a worker, alone.

#ifndef PARALLEL_INTERNAL_WORKER_MAIN_H_
#define PARALLEL_INTERNAL_WORKER_MAIN_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>

#include "parallel/internal/worker_pool.h"

namespace parallel {
namespace internal {

// The id a worker's records carry for its onexit.
inline constexpr uint64_t kOnexitId = std::numeric_limits<uint64_t>::max();

// Runs inputs until told to finish (or the parent is gone); returns the
// worker's exit code (3 if the parent sent garbage).
int WorkerMain(int socket, const TaskBody& task,
               const std::function<void()>& onexit, bool keep_values,
               bool combine_stderr);

// Runs every input in Put(), here, one after another (no capture).
std::unique_ptr<WorkerPool> MakeInlinePool(TaskBody task, PoolConfig config);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_WORKER_MAIN_H_
