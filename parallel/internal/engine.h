// The event loop behind RunSteps: starts children within the parallelism
// limit, watches them through pidfds in one ppoll, enforces deadlines, kills
// and reaps, and replays captured output in step order (the earliest
// unfinished step streamed live).
//
// Priorities each turn, highest first: an interrupt from the caller's signal,
// children that ended, deadlines, live output.
//
// Thread-safety: one Engine per run, used from one thread.

#ifndef PARALLEL_INTERNAL_ENGINE_H_
#define PARALLEL_INTERNAL_ENGINE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "parallel/options.h"
#include "parallel/run_hooks.h"
#include "parallel/step.h"

namespace parallel {
namespace internal {

// How often the live head step's capture file is checked for new output.
inline constexpr absl::Duration kLiveStreamInterval = absl::Milliseconds(20);
// At most this many finished, not yet replayed steps keep their own capture
// files open; the output of further ones is moved into one spool file, so fd
// use stays constant however many steps finish ahead of the head.
inline constexpr size_t kMaxHeldCaptures = 32;
// Emptied capture files kept for reuse.
inline constexpr size_t kMaxPooledCaptures = 64;
// With combine_stderr = false, stderr is written this far into the step's
// capture file (a sparse region), so each step needs one temp file, not two.
inline constexpr uint64_t kErrRegion = uint64_t{1} << 40;
// How much of a failed step's output its report keeps as output_tail.
inline constexpr uint64_t kOutputTailBytes = 4096;

// Validated options in, report out. See RunSteps in parallel/steps.h.
absl::StatusOr<RunReport> RunEngine(std::vector<Step> steps,
                                    const ParallelOptions& options,
                                    const RunHooks& hooks = {});

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_ENGINE_H_
