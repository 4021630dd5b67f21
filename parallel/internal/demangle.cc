#include "parallel/internal/demangle.h"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

namespace parallel {
namespace internal {

std::string Demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> demangled(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  return status == 0 && demangled != nullptr ? std::string(demangled.get())
                                             : std::string(mangled);
}

}  // namespace internal
}  // namespace parallel
