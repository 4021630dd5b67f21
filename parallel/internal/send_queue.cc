#include "parallel/internal/send_queue.h"

#include <sys/socket.h>

#include <algorithm>
#include <utility>

namespace parallel {
namespace internal {

void SendQueue::Append(absl::string_view data, std::vector<UniqueFd> fds) {
  if (!fds.empty()) attached_.push_back(Attached{bytes_.size(), std::move(fds)});
  bytes_.append(data.data(), data.size());
}

void SendQueue::Clear() {
  bytes_.clear();
  sent_ = 0;
  attached_.clear();
}

int SendQueue::Flush(int socket) {
  while (!empty()) {
    // A send never spans the next attachment: it starts one, or ends
    // before it.
    size_t end = bytes_.size();
    const Attached* with = nullptr;
    if (!attached_.empty()) {
      if (attached_.front().offset == sent_) {
        with = &attached_.front();
        if (attached_.size() > 1) end = attached_[1].offset;
      } else {
        end = attached_.front().offset;
      }
    }
    iovec iov = {bytes_.data() + sent_, end - sent_};
    msghdr message = {};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    FdControl control = {};
    if (with != nullptr) {
      int fds[kMaxFds];
      const size_t count = std::min(with->fds.size(), kMaxFds);
      for (size_t i = 0; i < count; ++i) fds[i] = with->fds[i].get();
      AttachFds(&message, &control, fds, count);
    }
    const ssize_t n = RetryOnEintr([&] {
      return ::sendmsg(socket, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    });
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno;
    if (n == 0) return EIO;
    // The descriptors went with the first byte; ours are closed now.
    if (with != nullptr) attached_.pop_front();
    sent_ += static_cast<size_t>(n);
  }
  Clear();  // all sent: the buffer starts over
  return 0;
}

}  // namespace internal
}  // namespace parallel
