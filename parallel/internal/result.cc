#include "parallel/internal/result.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <tuple>

#include "absl/strings/str_cat.h"
#include "parallel/codec.h"
#include "parallel/internal/call_body.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/launch.h"
#include "parallel/step_observer_internal.h"

namespace parallel {
namespace internal {
namespace {

using FailureTuple = std::tuple<std::string, std::string, std::string>;

// Exit code of a forked child that could not report its result.
constexpr int kExitReportFailed = 126;

}  // namespace

int FlushOutput() {
  FlushCppStreams();
  int error = 0;
  for (FILE* stream : {stdout, stderr}) {
    errno = 0;
    if ((std::fflush(stream) != 0 || std::ferror(stream)) && error == 0) {
      // stdio keeps no errno of an earlier failed write; EIO stands for it.
      error = errno != 0 ? errno : EIO;
    }
    // Reported once: a worker's next input starts with clean streams.
    std::clearerr(stream);
  }
  return error;
}

void AppendFailureRecord(const ExceptionInfo& failure, std::string* out) {
  AppendRecord(
      RecordKind::kFailure,
      Encode(FailureTuple(failure.type, failure.message, failure.traceback)),
      out);
}

namespace {

// RunBody up to its record: 0 with *value (the body's, or "" when
// !keep_value), or 1 with *failure.
int CallAndFlush(const Body& body, bool keep_value, std::string* value,
                 ExceptionInfo* failure) {
  ExceptionInfo error;
  ObserversBeforeBody(/*in_child=*/true);
  const bool ok = CallBody(body, value, &error);
  std::optional<ExceptionInfo> observed = ObserversAfterBody(/*in_child=*/true);
  // Output the step printed but could not deliver (a full disk, a file size
  // limit, a closed pipe) fails the step with the reason.
  if (const int lost = FlushOutput(); lost != 0) {
    *failure = {std::string(kOutputLost),
                absl::StrCat("could not write the step's output: ",
                             ::strerror(lost)),
                "", ""};
    return 1;
  }
  if (!ok || observed) {
    *failure = !ok ? std::move(error) : *std::move(observed);
    return 1;
  }
  if (!keep_value) value->clear();
  return 0;
}

}  // namespace

int RunBody(const Body& body, bool keep_value, std::string* out) {
  std::string value;
  ExceptionInfo failure;
  if (CallAndFlush(body, keep_value, &value, &failure) != 0) {
    AppendFailureRecord(failure, out);
    return 1;
  }
  AppendRecord(RecordKind::kValue, value, out);
  return 0;
}

int RunBodyAndReport(const Body& body, int result_fd, bool keep_value) {
  std::string value;
  ExceptionInfo failure;
  const int code = CallAndFlush(body, keep_value, &value, &failure);
  bool written;
  if (code == 0) {
    // The header from the stack and the value from where it is: a forked
    // child allocates nothing it need not (each heap page it writes is a
    // copy-on-write fault).
    written = WriteRecord(result_fd, RecordKind::kValue, value.data(),
                          value.size());
  } else {
    std::string records;
    AppendFailureRecord(failure, &records);
    written = WriteFully(result_fd, records.data(), records.size()) == 0;
  }
  return written ? code : kExitReportFailed;
}

void ChildResult::Add(const Record& record) {
  switch (record.kind) {
    case RecordKind::kValue:
      value = record.payload;
      return;
    case RecordKind::kFailure: {
      FailureTuple decoded;
      if (absl::Status status = DecodeInto(record.payload, &decoded);
          !status.ok()) {
        corrupt = absl::DataLossError(
            absl::StrCat("corrupt failure record: ", status.message()));
        return;
      }
      auto& [type, message, traceback] = decoded;
      failure = ExceptionInfo{std::move(type), std::move(message),
                              std::move(traceback), "", 0};
      return;
    }
    case RecordKind::kStartFailed: {
      if (record.payload.size() < 4) {
        corrupt = absl::DataLossError("corrupt start-failure record");
        return;
      }
      uint32_t error = 0;
      for (int i = 0; i < 4; ++i) {
        error |=
            static_cast<uint32_t>(static_cast<unsigned char>(record.payload[i]))
            << (8 * i);
      }
      failure = ExceptionInfo{
          std::string(kProcessStartError),
          absl::StrCat("could not start: ", record.payload.substr(4), ": ",
                       ::strerror(static_cast<int>(error))),
          "", "", 0};
      return;
    }
    case RecordKind::kCrash:
      crash_trace = record.payload;
      return;
    case RecordKind::kNote:
      notes.push_back(record.payload);
      return;
    case RecordKind::kHang:
      hang_trace = record.payload;
      return;
    default:
      return;
  }
}

ChildResult ParseChildResult(absl::string_view records) {
  ChildResult result;
  absl::StatusOr<std::vector<Record>> parsed = ParseRecords(records);
  if (!parsed.ok()) {
    result.corrupt = parsed.status();
    return result;
  }
  for (const Record& record : *parsed) result.Add(record);
  return result;
}

}  // namespace internal
}  // namespace parallel
