// Calling a step's body and describing how it ended: the one place that turns
// a thrown exception or a non-OK status into an ExceptionInfo. Used in forked
// children, in pre-forked workers and by the in-process fake alike.
//
// Thread-safety: thread-safe (it calls `body` on the calling thread).

#ifndef PARALLEL_INTERNAL_CALL_BODY_H_
#define PARALLEL_INTERNAL_CALL_BODY_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/failure.h"

namespace parallel {
namespace internal {

// Calls `body`; never throws. On success returns true and moves the value
// into *value. Otherwise returns false and fills *error's type, message and
// traceback (demangled exception type and what(), "unknown exception" for
// non-std exceptions, or "absl::Status" and Status::ToString()); error->step
// is left to the caller. `traceback`: false leaves it empty — for callers in
// a process that forks later (the executor's parent): absl::Symbolize caches
// open ELF files, and forked children that inherit those descriptors share
// their file offsets, so concurrent symbolizing in two children races
// (lseek + read) and aborts.
bool CallBody(const std::function<absl::StatusOr<std::string>()>& body,
              std::string* value, ExceptionInfo* error, bool traceback = true);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_CALL_BODY_H_
