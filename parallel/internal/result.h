// What a child reports to its parent, both halves of the protocol: the child
// runs its body and appends one result record (kValue or kFailure, record.h);
// the parent turns the records it received into a ChildResult. The failure
// schema — (type, message, traceback) — is spelled out here and nowhere else.
//
//   // child:
//   std::string records;
//   RunBody(body, /*keep_value=*/true, &records);
//   // parent, after the child ended:
//   ChildResult result = ParseChildResult(records);
//
// Thread-safety: plain functions; RunBody calls `body` on the calling thread.

#ifndef PARALLEL_INTERNAL_RESULT_H_
#define PARALLEL_INTERNAL_RESULT_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallel/failure.h"
#include "parallel/internal/record.h"

namespace parallel {
namespace internal {

using Body = std::function<absl::StatusOr<std::string>()>;

// Child side. Flushes std::cout, std::cerr, stdout and stderr; returns the
// errno of a failed write (ENOSPC, EPIPE, ...) or 0.
int FlushOutput();

// Appends a kFailure record with this type, message and traceback.
void AppendFailureRecord(const ExceptionInfo& failure, std::string* out);

// Runs `body` between the StepObservers' BeforeBody and AfterBody (in a
// child), flushes stdio, and appends one record to *out: kValue (its value,
// or "" when !keep_value), or kFailure (the exception or status, an
// observer's failure, or parallel::OutputLost if stdio could not write).
// Returns 0 on kValue, else 1.
int RunBody(const Body& body, bool keep_value, std::string* out);

// In a forked child: RunBody, then the record written to `result_fd`.
// Returns RunBody's code, or 126 if the record could not be written.
int RunBodyAndReport(const Body& body, int result_fd, bool keep_value);

// Parent side: what a child said, from its records.
struct ChildResult {
  // DataLoss if the records could not be parsed or decoded; then nothing
  // below is trusted.
  absl::Status corrupt = absl::OkStatus();
  // kValue's payload, when the body succeeded.
  std::optional<std::string> value;
  // kFailure (type, message, traceback; step and pid left to the caller), or
  // kStartFailed as a parallel::ProcessStartError.
  std::optional<ExceptionInfo> failure;
  // What the body sent its StepObservers (kNote), in order.
  std::vector<std::string> notes;
  // Stacks recorded by the child's handlers (kCrash, kHang).
  std::string crash_trace;
  std::string hang_trace;

  // Takes one record into account; kValue/kFailure/kCrash/kHang/
  // kStartFailed/kNote, others are ignored.
  void Add(const Record& record);
};

ChildResult ParseChildResult(absl::string_view records);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_RESULT_H_
