// Demangling of C++ type names, for ExceptionInfo::type.
// Thread-safety: thread-safe.

#ifndef PARALLEL_INTERNAL_DEMANGLE_H_
#define PARALLEL_INTERNAL_DEMANGLE_H_

#include <string>

namespace parallel {
namespace internal {

// "St13runtime_error" -> "std::runtime_error"; the input itself if it does not
// demangle.
std::string Demangle(const char* mangled);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_DEMANGLE_H_
