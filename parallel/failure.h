// parallel/failure.h — how failures of steps are described and raised.
//
// Every failure of a step — a thrown exception, a non-OK absl::Status, an exit
// or a crash of its process, a timeout — becomes one ExceptionInfo. The
// throwing API raises all of them together as one BackgroundFailure after all
// output has been replayed:
//
//   try {
//     parallel::RunParallelSteps({StepA, StepB});
//   } catch (const parallel::BackgroundFailure& failure) {
//     std::cerr << failure.ToSummaryString();
//     if (failure.HasFailureType(parallel::kProcessTimeout)) ...
//   }
//
// Thread-safety: the types are plain values; const methods may be called from
// any number of threads.

#ifndef PARALLEL_FAILURE_H_
#define PARALLEL_FAILURE_H_

#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace parallel {

// Synthetic failure types, for failures that are not a C++ exception.
inline constexpr absl::string_view kStatusFailure = "absl::Status";
inline constexpr absl::string_view kProcessUnexpectedExit =
    "parallel::ProcessUnexpectedExit";
inline constexpr absl::string_view kProcessTimeout = "parallel::ProcessTimeout";
inline constexpr absl::string_view kProcessSilentTimeout =
    "parallel::ProcessSilentTimeout";
// The step's process could not be started (fork, temp file or spawn failed).
inline constexpr absl::string_view kProcessStartError =
    "parallel::ProcessStartError";
// The step's stdio output could not be written (the temp dir's disk is full,
// a file size limit, ...); the message names the OS error.
inline constexpr absl::string_view kOutputLost = "parallel::OutputLost";
// The step's process ended but what it reported could not be decoded.
inline constexpr absl::string_view kCorruptResult = "parallel::CorruptResult";

struct ExceptionInfo {
  // Demangled C++ type ("std::runtime_error"), "absl::Status", or one of the
  // synthetic types above.
  std::string type;
  // Exactly what the step produced: what(), Status::ToString(), or the
  // synthetic text (which names the step and its pid). Never has the step or
  // pid spliced in, so callers can compare it.
  std::string message;
  // Symbolized stack, one frame a line; empty when none could be had.
  std::string traceback;
  // Which step or input failed: its name, or "step 3", "input 12".
  std::string step;
  // The process it ran in; 0 when there was none (it never started, or it
  // ran in the calling process under the in-process fake).
  int pid = 0;

  // "<type>: <message>".
  std::string ToString() const;
};

bool operator==(const ExceptionInfo& a, const ExceptionInfo& b);

class BackgroundFailure : public std::runtime_error {
 public:
  // `exc_infos` should not be empty; what() lists every entry as
  // "<step> (pid N): <type>: <message>" followed by its traceback.
  explicit BackgroundFailure(std::vector<ExceptionInfo> exc_infos);

  const std::vector<ExceptionInfo>& exc_infos() const { return exc_infos_; }
  // True if any entry has this type.
  bool HasFailureType(absl::string_view type) const;
  // True if there is at least one entry and every entry has this type.
  bool MatchesFailureType(absl::string_view type) const;
  // One "<step> (pid N): <type>: <message>" line per entry (" (pid N)" only
  // when there was a process).
  std::string ToSummaryString() const;

 private:
  std::vector<ExceptionInfo> exc_infos_;
};

}  // namespace parallel

#endif  // PARALLEL_FAILURE_H_
