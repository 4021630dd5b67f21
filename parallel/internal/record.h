// Records: how a child reports its result to the parent.
//
// The child appends framed records to a result file the parent created before
// fork; the parent reads them after the child has ended. Each record is
//   "PRL1" | kind (1 byte) | 3 zero bytes | payload length (u64 LE) |
//   CRC-32 of the payload (u32 LE) | payload
// and is validated (magic, kind, length, checksum) before it is trusted, so a
// step that scribbles over the file, or dies half-way through a write, yields a
// clean "corrupt result" error rather than garbage.
//
// Thread-safety: WriteRecord is async-signal-safe; ParseRecords is pure.

#ifndef PARALLEL_INTERNAL_RECORD_H_
#define PARALLEL_INTERNAL_RECORD_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parallel {
namespace internal {

enum class RecordKind : uint8_t {
  kValue = 1,    // the step succeeded; payload is its encoded value (or empty)
  kFailure = 2,  // the step failed; payload encodes type, message, traceback
  kCrash = 3,    // a fatal signal; payload is the crashing thread's stack
  kHang = 4,     // a timeout stack dump; payload is the hung thread's stack
  // Between a task runner's parent and its workers (worker_pool.h):
  kInput = 5,    // parent to worker: Encode(tuple<uint64 id, uint32 lane,
                 // bool new_pipes, uint64 entry, string args>); a lane's
                 // new output pipe(s)
                 // travel with it (SCM_RIGHTS), worker_main.h
  kFinish = 6,   // parent to worker: run onexit (output pipe(s) attached),
                 // report, exit
  kDone = 7,     // worker to parent: Encode(tuple<uint64 id, bool
                 // left_processes, bool pipes_empty>) after the input's
                 // kValue/kFailure
  kStarted = 8,  // worker to parent: Encode(uint64 id), before it runs
  kStartFailed = 9,  // a child's preparation failed: errno (u32 LE), then the
                     // name of the call
  kNote = 10,  // a body's note for the caller's StepObservers (opaque)
  kInitFailed = 11,  // worker to parent, after kDone: the initializer threw
                     // (the input failed with its exception); it exits
};

inline constexpr size_t kRecordHeaderSize = 20;

// CRC-32 (IEEE). Async-signal-safe.
uint32_t Crc32(const void* data, size_t size);

// Appends one record to `fd`. Async-signal-safe. False if a write failed.
bool WriteRecord(int fd, RecordKind kind, const void* payload, size_t size);

// Appends one record's bytes to *out (for senders that batch their writes).
void AppendRecord(RecordKind kind, absl::string_view payload, std::string* out);

struct Record {
  RecordKind kind;
  std::string payload;
};

// Takes one complete record off the front of *bytes into *record. Returns
// false (and leaves *bytes alone) if *bytes holds only part of one;
// DataLossError if the bytes cannot be a record.
absl::StatusOr<bool> TakeRecord(absl::string_view* bytes, Record* record);

// Parses every record in `bytes`; DataLossError on the first bad one.
absl::StatusOr<std::vector<Record>> ParseRecords(absl::string_view bytes);

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_RECORD_H_
