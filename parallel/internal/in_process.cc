#include "parallel/internal/in_process.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "parallel/internal/call_body.h"

namespace parallel {
namespace internal {
namespace {

std::atomic<int> g_in_process{0};

}  // namespace

void EnterInProcessMode() { g_in_process.fetch_add(1); }

void LeaveInProcessMode() { g_in_process.fetch_sub(1); }

bool InProcessMode() { return g_in_process.load() > 0; }

bool RunInProcess(const std::function<absl::StatusOr<std::string>()>& body,
                  const std::string& who, std::string* value,
                  ExceptionInfo* error) {
  if (CallBody(body, value, error)) return true;
  absl::StrAppend(&error->message, " [", who, "]");
  return false;
}

}  // namespace internal
}  // namespace parallel
