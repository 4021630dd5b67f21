// Tracebacks for exceptions thrown by steps.
//
// By default the traceback of a thrown exception is the stack where the child
// caught it. Linking //parallel:throw_traces installs a provider that records
// the stack at every throw, so the traceback shows the throw site instead.
//
// Thread-safety: SetThrowTraceProvider is meant for static initialization;
// TracebackForCurrentException is thread-safe.

#ifndef PARALLEL_INTERNAL_THROW_TRACE_H_
#define PARALLEL_INTERNAL_THROW_TRACE_H_

#include <string>

namespace parallel {
namespace internal {

// Fills *traceback with the throw-site stack of the exception being handled;
// false if it has none.
using ThrowTraceProvider = bool (*)(std::string* traceback);

void SetThrowTraceProvider(ThrowTraceProvider provider);

// Called inside a catch block: the throw-site stack if a provider has one,
// else the current stack.
std::string TracebackForCurrentException();

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_THROW_TRACE_H_
