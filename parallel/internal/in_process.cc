#include "parallel/internal/in_process.h"

#include <cxxabi.h>

#include <atomic>
#include <exception>
#include <typeinfo>

#include "absl/strings/str_cat.h"
#include "parallel/internal/demangle.h"
#include "parallel/internal/throw_trace.h"

namespace parallel {
namespace internal {
namespace {

std::atomic<int> g_in_process{0};

std::string CurrentExceptionType() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  return type == nullptr ? "unknown" : Demangle(type->name());
}

}  // namespace

void EnterInProcessMode() { g_in_process.fetch_add(1); }

void LeaveInProcessMode() { g_in_process.fetch_sub(1); }

bool InProcessMode() { return g_in_process.load() > 0; }

bool RunInProcess(const std::function<absl::StatusOr<std::string>()>& body,
                  const std::string& who, std::string* value,
                  ExceptionInfo* error) {
  try {
    absl::StatusOr<std::string> result = body();
    if (result.ok()) {
      *value = *std::move(result);
      return true;
    }
    *error = {"absl::Status",
              absl::StrCat(result.status().ToString(), " [", who, "]"), "", ""};
  } catch (const std::exception& e) {
    *error = {CurrentExceptionType(), absl::StrCat(e.what(), " [", who, "]"),
              TracebackForCurrentException(), ""};
  } catch (...) {
    *error = {CurrentExceptionType(),
              absl::StrCat("unknown exception [", who, "]"),
              TracebackForCurrentException(), ""};
  }
  return false;
}

}  // namespace internal
}  // namespace parallel
