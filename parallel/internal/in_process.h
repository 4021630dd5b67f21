// The test seam: a switch that makes every run execute its closures one after
// another in the calling process, as chromite's ParallelMock did. Users turn
// it on through parallel::testing::InProcessSteps (testing/in_process_steps.h).
//
// Thread-safety: the switch is a process-wide atomic counter.

#ifndef PARALLEL_INTERNAL_IN_PROCESS_H_
#define PARALLEL_INTERNAL_IN_PROCESS_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/failure.h"

namespace parallel {
namespace internal {

void EnterInProcessMode();
void LeaveInProcessMode();
bool InProcessMode();

// Runs `body` here and now. On success returns true and sets *value; on a
// thrown exception or a non-OK status returns false and fills *error (type,
// message with " [<who>]", traceback).
bool RunInProcess(const std::function<absl::StatusOr<std::string>()>& body,
                  const std::string& who, std::string* value,
                  ExceptionInfo* error);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_IN_PROCESS_H_
