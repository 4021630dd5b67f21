// The library's side of step_observer.h: where children learn their note
// channel, and where runs call the observers.
//
// Thread-safety: as step_observer.h.

#ifndef PARALLEL_STEP_OBSERVER_INTERNAL_H_
#define PARALLEL_STEP_OBSERVER_INTERNAL_H_

#include <optional>
#include <string>
#include <vector>

#include "parallel/failure.h"

namespace parallel {
namespace internal {

// In a freshly forked child: notes go to `fd` (its result channel).
void SetNoteChannel(int fd);

// Around a body, wherever it runs.
void ObserversBeforeBody(bool in_child);
// The first failure an observer (or the GoogleTest fallback) reports.
std::optional<ExceptionInfo> ObserversAfterBody(bool in_child);

// In the caller, when a step or input has ended.
void DeliverNotes(const std::string& step, int pid,
                  const std::vector<std::string>& notes);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_STEP_OBSERVER_INTERNAL_H_
