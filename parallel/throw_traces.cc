// Records the stack at every C++ throw so that ExceptionInfo::traceback shows
// where an exception was thrown, not where the child caught it.
//
// It interposes __cxa_throw (the call every `throw` expression compiles to):
// the stack is captured into a thread-local buffer, then the real __cxa_throw
// runs. Cost: one unsymbolized stack walk per throw (measured 0.3 us on top
// of a 2.2 us throw-and-catch: //parallel:throw_traces_benchmark);
// symbolization happens only when a step's failure is reported. Exceptions
// thrown inside libstdc++ itself (std::vector::at and the like) bind to the
// library's own __cxa_throw and keep the catch-site traceback.

#include <dlfcn.h>

#include <string>
#include <typeinfo>

#include "absl/debugging/stacktrace.h"
#include "absl/debugging/symbolize.h"
#include "parallel/internal/stack.h"
#include "parallel/internal/throw_trace.h"

namespace {

constexpr int kMaxFrames = 64;

struct ThrowSite {
  void* exception = nullptr;
  void* frames[kMaxFrames];
  int depth = 0;
};

thread_local ThrowSite t_last_throw;

using CxaThrow = void (*)(void*, std::type_info*, void (*)(void*));

bool ThrowSiteTraceback(std::string* traceback) {
  if (t_last_throw.depth == 0) return false;
  char symbol[512];
  for (int i = 0; i < t_last_throw.depth; ++i) {
    char line[64];
    snprintf(line, sizeof(line), "    @ %p  ", t_last_throw.frames[i]);
    traceback->append(line);
    // Return addresses point after the call (for a throw, often past the end
    // of the function); symbolize the call itself.
    const char* pc = static_cast<const char*>(t_last_throw.frames[i]) - 1;
    traceback->append(
        absl::Symbolize(pc, symbol, sizeof(symbol)) ? symbol : "(unknown)");
    traceback->push_back('\n');
  }
  return true;
}

const bool kRegistered = [] {
  parallel::internal::SetThrowTraceProvider(&ThrowSiteTraceback);
  return true;
}();

}  // namespace

extern "C" [[noreturn]] void __cxa_throw(void* exception, std::type_info* type,
                                         void (*destructor)(void*)) {
  static const CxaThrow real_throw =
      reinterpret_cast<CxaThrow>(dlsym(RTLD_NEXT, "__cxa_throw"));
  t_last_throw.exception = exception;
  // Frame 0 is the return address into the function with the throw.
  t_last_throw.depth =
      absl::GetStackTrace(t_last_throw.frames, kMaxFrames, /*skip_count=*/0);
  real_throw(exception, type, destructor);
  __builtin_unreachable();
}
