// Bytes (and descriptors) queued for a stream socket that the sender must
// never block on: the pool's event loop writes to each worker what the
// worker's socket takes now, and the rest when poll says it can take more.
// A worker busy with a long task reads nothing; a blocking send to it would
// stall the loop — every timeout, output and signal of the run with it.
//
// Descriptors go attached (SCM_RIGHTS) to the first byte of the data they
// were queued with, so a receiver that takes them in arrival order has each
// before the whole record that needs it.
//
// Thread-safety: a value type, used from one thread.

#ifndef PARALLEL_INTERNAL_SEND_QUEUE_H_
#define PARALLEL_INTERNAL_SEND_QUEUE_H_

#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "parallel/internal/fd.h"

namespace parallel {
namespace internal {

class SendQueue {
 public:
  // At most this many descriptors go with one piece of data.
  static constexpr size_t kMaxFds = kMaxSentFds;

  // Queues `data`; `fds`, owned here until sent, go with its first byte.
  // Callers pass at most kMaxFds, with non-empty data: any more are closed
  // unsent, and those of empty data go with the next data queued (or are
  // closed unsent by a Flush that finds nothing after them).
  void Append(absl::string_view data, std::vector<UniqueFd> fds = {});
  // Sends what `socket` takes without blocking. Returns 0 (all sent, or the
  // socket is full: see empty()), or the errno of a failed send (EPIPE when
  // the receiver is gone); never raises SIGPIPE.
  int Flush(int socket);
  bool empty() const { return sent_ == bytes_.size(); }
  size_t pending_bytes() const { return bytes_.size() - sent_; }
  // Drops everything unsent (closing the descriptors).
  void Clear();

 private:
  struct Attached {
    size_t offset;  // in bytes_
    std::vector<UniqueFd> fds;
  };
  std::string bytes_;
  size_t sent_ = 0;  // bytes_ before it are gone
  std::deque<Attached> attached_;  // by offset
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_SEND_QUEUE_H_
