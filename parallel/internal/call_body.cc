#include "parallel/internal/call_body.h"

#include <cxxabi.h>

#include <exception>
#include <typeinfo>
#include <utility>

#include "parallel/internal/demangle.h"
#include "parallel/internal/throw_trace.h"

namespace parallel {
namespace internal {
namespace {

std::string CurrentExceptionType() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  return type == nullptr ? "unknown" : Demangle(type->name());
}

}  // namespace

bool CallBody(const std::function<absl::StatusOr<std::string>()>& body,
              std::string* value, ExceptionInfo* error, bool traceback) {
  try {
    absl::StatusOr<std::string> result = body();
    if (result.ok()) {
      *value = *std::move(result);
      return true;
    }
    *error = {"absl::Status", result.status().ToString(), "", ""};
  } catch (const std::exception& e) {
    *error = {CurrentExceptionType(), e.what(),
              traceback ? TracebackForCurrentException() : "", ""};
  } catch (...) {
    *error = {CurrentExceptionType(), "unknown exception",
              traceback ? TracebackForCurrentException() : "", ""};
  }
  return false;
}

}  // namespace internal
}  // namespace parallel
