// Sink: where replayed output is written — the caller's output_fd or
// error_fd — without ever blocking the event loop or killing the caller.
//
//  - Never blocks: for a pipe, FIFO or terminal the sink writes through an
//    open file description of its own with O_NONBLOCK (reopened through
//    /proc/self/fd, so the caller's description and its flags are left
//    alone); when it is full, blocked() is set and the supervisor polls
//    poll_fd() for POLLOUT while it goes on serving children, deadlines and
//    signals. Regular files and character devices such as /dev/null are
//    written directly (they do not wait on a reader). A socket is written
//    with MSG_DONTWAIT.
//  - Never raises SIGPIPE in the caller: SIGPIPE is blocked on the calling
//    thread around each write and a SIGPIPE the write raised is consumed.
//  - Never loses an error: the first failed write (EPIPE, ENOSPC, EBADF...)
//    is latched in error(); nothing more is written after it.
//
//   Sink out(options.output_fd, "stdout");
//   uint64_t n = out.Copy(file, offset, length);   // may be < length
//   if (out.error() != 0) ...                      // report OutputLost
//
// Thread-safety: thread-compatible.

#ifndef PARALLEL_INTERNAL_SINK_H_
#define PARALLEL_INTERNAL_SINK_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "parallel/internal/fd.h"

namespace parallel {
namespace internal {

class Sink {
 public:
  // `fd` is not owned. `name` ("stdout", "stderr") is used in messages.
  Sink(int fd, std::string name);
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  // Copies up to `length` bytes at `offset` of the file `from` — by the
  // kernel (sendfile) into a regular file or /dev/null, through a buffer
  // into a pipe, terminal or socket (sendfile would queue references to
  // pages the caller rewrites next) — and returns how many were written
  // (fewer if the sink filled up, or on an error).
  uint64_t Copy(int from, uint64_t offset, uint64_t length);
  // Queues `bytes` and writes what the sink takes now. Queued bytes are
  // written before anything else; Flush() retries them.
  void Write(absl::string_view bytes);
  // Writes queued bytes; true once none are left.
  bool Flush();

  // The last write stopped because the sink was full: poll poll_fd() for
  // POLLOUT, then call Unblock().
  bool blocked() const { return blocked_; }
  void Unblock() { blocked_ = false; }
  int poll_fd() const { return write_fd_; }
  // Stops writing for good (after an interrupt, behind a reader that takes
  // nothing): error() becomes `error` if none was latched, queued bytes go.
  void GiveUp(int error);
  bool given_up() const { return given_up_; }
  // Nothing more can be written: error() != 0.
  bool broken() const { return error_ != 0; }
  int error() const { return error_; }
  const std::string& name() const { return name_; }
  // The descriptor the caller gave (children close it).
  int fd() const { return fd_; }
  // The sink's own descriptor, if it reopened the target (children close it).
  int own_fd() const { return own_.get(); }

 private:
  // One write(2) or send(2) of `data`; returns bytes written, 0 when full.
  size_t WriteSome(const char* data, size_t size);
  // Records the outcome of a failed or short write.
  void Failed(int error);

  const int fd_;
  const std::string name_;
  UniqueFd own_;  // own non-blocking description, if reopened
  int write_fd_;  // own_ or fd_
  bool is_socket_ = false;
  // A pipe or FIFO (or unknown): writes are guarded against SIGPIPE.
  bool may_raise_sigpipe_ = true;
  bool blocked_ = false;
  bool given_up_ = false;
  int error_ = 0;
  // Regular files and devices only (see the constructor).
  bool use_sendfile_ = false;
  std::string queued_;
  std::string buffer_;  // for copies through user space
};

// While it lives, SIGPIPE is blocked on this thread; a SIGPIPE raised on the
// thread meanwhile is consumed when it ends (one already pending before is
// left pending). Cheap: three syscalls.
class SigpipeGuard {
 public:
  SigpipeGuard();
  ~SigpipeGuard();
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  bool was_pending_ = false;
  bool was_blocked_ = false;
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_SINK_H_
