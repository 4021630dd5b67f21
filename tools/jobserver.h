// A GNU make jobserver client, as a parallel::Throttle.
//
// Under `make -jN`, make advertises a jobserver in MAKEFLAGS
// (--jobserver-auth=R,W with inherited pipe fds, make 4.3; or
// --jobserver-auth=fifo:PATH, make 4.4). A client runs one job on make's
// implicit slot and reads one token byte per extra job, writing it back when
// the job ends, so that all of make's recipes together stay within N jobs.
//
// Thread-safety: thread-compatible.

#ifndef TOOLS_JOBSERVER_H_
#define TOOLS_JOBSERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallel/run_hooks.h"

namespace tools {

class JobserverClient : public parallel::Throttle {
 public:
  // The jobserver MAKEFLAGS advertises; nullptr when it advertises none, or
  // when its fds were not passed to this process (a recipe make did not
  // mark as recursive with '+' or $(MAKE)). An error for a malformed value.
  static absl::StatusOr<std::unique_ptr<JobserverClient>> FromMakeflags(
      absl::string_view makeflags);

  // Gives back every token still held.
  ~JobserverClient() override;

  bool TryAcquire() override;
  void Release() override;
  int wake_fd() const override { return read_fd_; }

  size_t held() const { return tokens_.size(); }

 private:
  JobserverClient(int read_fd, int write_fd, bool own_write)
      : read_fd_(read_fd), write_fd_(write_fd), own_write_(own_write) {}

  int read_fd_;   // our own non-blocking open of the read side
  int write_fd_;  // make's write side (or our own open of the fifo)
  bool own_write_;
  std::vector<char> tokens_;  // the bytes read, given back as they were
};

}  // namespace tools

#endif  // TOOLS_JOBSERVER_H_
