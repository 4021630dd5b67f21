#include "parallel/internal/judge.h"

#include <string.h>

#include "absl/strings/str_cat.h"

namespace parallel {
namespace internal {
namespace {

ExceptionInfo Failure(absl::string_view type, std::string message,
                      std::string traceback = "") {
  return ExceptionInfo{std::string(type), std::move(message),
                       std::move(traceback), "", 0};
}

// Why a timed-out child did nothing: it was stopped.
std::string StoppedBy(int stop_signal) {
  if (stop_signal < 0) return "";
  return absl::StrCat(" (it was stopped by ", SignalName(stop_signal), ")");
}

Verdict Failed(ExceptionInfo error) {
  Verdict verdict;
  verdict.outcome = StepOutcome::kFailed;
  verdict.error = std::move(error);
  return verdict;
}

}  // namespace

Verdict Judge(const JudgeInput& in) {
  const ChildResult* result = in.result;
  switch (in.why) {
    case KillReason::kHalt:
      return Verdict{StepOutcome::kHalted, std::nullopt, ""};
    case KillReason::kInterrupt:
      return Verdict{StepOutcome::kInterrupted, std::nullopt, ""};
    case KillReason::kTimeout:
      return Failed(Failure(kProcessTimeout,
                            absl::StrCat(in.who, " timed out after ",
                                         absl::FormatDuration(in.timeout),
                                         StoppedBy(in.stop_signal)),
                            result != nullptr ? result->hang_trace : ""));
    case KillReason::kSilentTimeout:
      return Failed(
          Failure(kProcessSilentTimeout,
                  absl::StrCat(in.who, " had no output for ",
                               absl::FormatDuration(in.silent_timeout),
                               StoppedBy(in.stop_signal)),
                  result != nullptr ? result->hang_trace : ""));
    case KillReason::kNone:
      break;
  }
  Verdict verdict;
  if (result != nullptr && !result->corrupt.ok()) {
    verdict = Failed(
        Failure(kCorruptResult, absl::StrCat(in.who, " sent a corrupt result: ",
                                             result->corrupt.message())));
  } else if (result != nullptr && result->failure) {
    verdict = Failed(*result->failure);
  } else if (result != nullptr && result->value &&
             (in.exit.success() || in.exit.lost())) {
    verdict.value = *result->value;
  } else if (result == nullptr && in.exit.success()) {
    // A command that exited 0.
  } else if (in.exit.killed()) {
    verdict = Failed(Failure(kProcessUnexpectedExit,
                             absl::StrCat(in.who, " ", in.exit.ToString()),
                             result != nullptr ? result->crash_trace : ""));
  } else if (in.exit.exited()) {
    verdict = Failed(Failure(
        kProcessUnexpectedExit,
        absl::StrCat(in.who,
                     result == nullptr ? " exited with code "
                                       : " exited unexpectedly with code ",
                     in.exit.exit_code())));
  } else {
    verdict = Failed(Failure(kProcessUnexpectedExit,
                             absl::StrCat(in.who, " ", in.exit.ToString())));
  }
  if (verdict.outcome == StepOutcome::kSucceeded && in.capture_error != 0) {
    // Nothing is lost silently: output that could not be kept fails the step.
    return Failed(Failure(
        kOutputLost, absl::StrCat(in.who, " output could not be captured: ",
                                  ::strerror(in.capture_error))));
  }
  return verdict;
}

}  // namespace internal
}  // namespace parallel
