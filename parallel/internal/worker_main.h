// The worker's side of the task runners' pool (worker_pool.h): the loop a
// pre-forked worker runs, and the pool's in-process stand-in for the test
// seam (in_process.h).
//
// Protocol on the worker's socket (record.h): the parent sends kInput
// (id, lane, new_pipes, entry, args, claim) or kFinish. An input with a
// claim (claims.h) that was withdrawn before the worker came to it is
// skipped: its kDone comes without a kStarted. A worker has kLanes pairs of
// output pipes ("lanes"), used by its inputs in turn: the parent sends a
// lane's pipe(s) (SCM_RIGHTS) with the first input that uses it, or fresh
// ones after a task left processes behind (new_pipes), and kFinish comes
// with onexit's own. For each, the worker points fds 1 and 2 at the lane,
// answers kStarted(id), runs the task (or onexit), and answers kValue or
// kFailure, then — once fds 1 and 2 point at the next input's lane (or
// /dev/null when none is waiting) — kDone(id, left_processes, pipes_empty).
// Every byte of an input is in its lane before kDone is sent, nothing in
// the worker writes to the lane after it, and the next input on that lane
// is sent only after the parent has read kDone and taken the lane's bytes,
// so a lane never holds two inputs' bytes — unless a process the task left
// behind writes later: left_processes tells the parent to retire the lane
// (the worker is a subreaper, so orphaned grandchildren count).
// pipes_empty (FIONREAD saw nothing queued) spares the parent a last read.
// A thread the task left running writes into whichever input runs next.
//
// Thread-safety: WorkerMain runs in a worker, alone.

#ifndef PARALLEL_INTERNAL_WORKER_MAIN_H_
#define PARALLEL_INTERNAL_WORKER_MAIN_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>

#include "parallel/internal/claims.h"
#include "parallel/internal/worker_pool.h"

namespace parallel {
namespace internal {

// The id a worker's records carry for its onexit.
inline constexpr uint64_t kOnexitId = std::numeric_limits<uint64_t>::max();

// What a worker runs. The pointers outlive WorkerMain.
struct WorkerSpec {
  const TaskBody* task = nullptr;  // inputs whose entry is 0
  const std::function<void()>* onexit = nullptr;
  // Before the first input, inside it: if it throws, that input fails with
  // its exception, the worker sends kInitFailed after kDone and exits.
  const std::function<void()>* initializer = nullptr;
  bool keep_values = false;
  bool combine_stderr = true;
  // Ends after its first input (a capturing callable's own process).
  bool one_shot = false;
  // The pool's claim words (claims.h), shared memory; null: none.
  ClaimWord* claims = nullptr;
  size_t claim_count = 0;
};

// Runs inputs until told to finish (or the parent is gone); returns the
// worker's exit code (3 if the parent sent garbage).
int WorkerMain(int socket, const WorkerSpec& spec);

// Runs every input in Submit(), here, one after another (no capture).
std::unique_ptr<WorkerPool> MakeInlinePool(TaskBody task, PoolConfig config);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_WORKER_MAIN_H_
