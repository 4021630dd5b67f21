#include "parallel/internal/in_process.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "absl/time/clock.h"
#include "parallel/internal/call_body.h"
#include "parallel/step_observer_internal.h"

namespace parallel {
namespace internal {
namespace {

std::atomic<int> g_in_process{0};

}  // namespace

void EnterInProcessMode() { g_in_process.fetch_add(1); }

void LeaveInProcessMode() { g_in_process.fetch_sub(1); }

bool InProcessMode() { return g_in_process.load() > 0; }

bool RunStepInProcess(const std::function<absl::StatusOr<std::string>()>& body,
                      bool keep_value, StepReport* report) {
  std::fflush(stdout);
  const absl::Time start = absl::Now();
  report->started = true;
  report->pid = ::getpid();
  std::string value;
  ExceptionInfo error;
  ObserversBeforeBody(/*in_child=*/false);
  bool ok = CallBody(body, &value, &error);
  if (std::optional<ExceptionInfo> observed =
          ObserversAfterBody(/*in_child=*/false);
      ok && observed) {
    ok = false;
    error = *std::move(observed);
  }
  if (ok) {
    report->outcome = StepOutcome::kSucceeded;
    report->exit_code = 0;
    if (keep_value) report->value = std::move(value);
  } else {
    error.step = report->name;
    error.pid = report->pid;
    report->outcome = StepOutcome::kFailed;
    report->error = std::move(error);
  }
  std::fflush(stdout);
  report->duration = absl::Now() - start;
  return ok;
}

}  // namespace internal
}  // namespace parallel
