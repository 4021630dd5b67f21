#include "parallel/internal/send_queue.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parallel {
namespace internal {
namespace {

struct Received {
  size_t from;
  size_t to;
  int fd;
};

struct Pair {
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    sender.reset(fds[0]);
    receiver.reset(fds[1]);
    ::fcntl(sender.get(), F_SETFL, O_NONBLOCK);
  }
  // Reads what is there now. Each descriptor received is appended to `fds`
  // with the stream offsets [from, to) of the bytes that came with it.
  std::string Drain(std::vector<Received>* fds, size_t before) {
    std::string got;
    while (true) {
      char buffer[1 << 16];
      char control[CMSG_SPACE(sizeof(int) * 4)];
      iovec iov = {buffer, sizeof(buffer)};
      msghdr message = {};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      const ssize_t n =
          ::recvmsg(receiver.get(), &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n <= 0) break;
      for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr;
           c = CMSG_NXTHDR(&message, c)) {
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds->push_back(
              {before + got.size(), before + got.size() + n, fd});
        }
      }
      got.append(buffer, n);
    }
    return got;
  }
  UniqueFd sender;
  UniqueFd receiver;
};

// A pipe whose read end is kept here and whose write end is queued: what
// the receiver writes into the descriptor it got shows which one it was.
struct Marker {
  Marker() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
  }
  UniqueFd read_end;
  UniqueFd write_end;
};

TEST(SendQueue, SendsEverythingAtOnceWhenTheSocketHasRoom) {
  Pair pair;
  SendQueue queue;
  queue.Append("hello ");
  queue.Append("world");
  EXPECT_EQ(queue.Flush(pair.sender.get()), 0);
  EXPECT_TRUE(queue.empty());
  std::vector<Received> fds;
  EXPECT_EQ(pair.Drain(&fds, 0), "hello world");
  EXPECT_TRUE(fds.empty());
}

// The case the queue exists for: a receiver that reads nothing. Flush
// returns at once with the rest kept, and sends it once there is room —
// every byte in order, each descriptor with the first byte of its data.
TEST(SendQueue, NeverBlocksOnAFullSocketAndKeepsOrderAndDescriptors) {
  Pair pair;
  SendQueue queue;
  const std::string big(1 << 22, 'a');  // far beyond a socket's buffer
  Marker first, second;
  queue.Append("head");
  std::vector<UniqueFd> with_first;
  with_first.push_back(std::move(first.write_end));
  queue.Append(big, std::move(with_first));
  std::vector<UniqueFd> with_second;
  with_second.push_back(std::move(second.write_end));
  queue.Append("tail", std::move(with_second));
  EXPECT_EQ(queue.Flush(pair.sender.get()), 0);  // returns: does not block
  EXPECT_FALSE(queue.empty());
  EXPECT_LT(queue.pending_bytes(), big.size() + 8);

  std::string got;
  std::vector<Received> fds;
  for (int round = 0; round < 10000 && !queue.empty(); ++round) {
    got += pair.Drain(&fds, got.size());
    ASSERT_EQ(queue.Flush(pair.sender.get()), 0);
  }
  ASSERT_TRUE(queue.empty());
  got += pair.Drain(&fds, got.size());
  EXPECT_EQ(got, "head" + big + "tail");
  ASSERT_EQ(fds.size(), 2u);
  // Each came with the first byte of its data (a receiver may get bytes
  // before it in the same read, never only bytes after it).
  EXPECT_LE(fds[0].from, 4u);
  EXPECT_GT(fds[0].to, 4u);
  EXPECT_LE(fds[1].from, 4u + big.size());
  EXPECT_GT(fds[1].to, 4u + big.size());
  // Each is the pipe it was queued as.
  ASSERT_EQ(::write(fds[0].fd, "1", 1), 1);
  ASSERT_EQ(::write(fds[1].fd, "2", 1), 1);
  char byte = 0;
  ASSERT_EQ(::read(first.read_end.get(), &byte, 1), 1);
  EXPECT_EQ(byte, '1');
  ASSERT_EQ(::read(second.read_end.get(), &byte, 1), 1);
  EXPECT_EQ(byte, '2');
  ::close(fds[0].fd);
  ::close(fds[1].fd);
}

TEST(SendQueue, AGoneReceiverIsAnErrorNotASignal) {
  Pair pair;
  pair.receiver.reset();
  SendQueue queue;
  queue.Append("lost");
  EXPECT_EQ(queue.Flush(pair.sender.get()), EPIPE);  // and no SIGPIPE
}

TEST(SendQueue, ClearClosesTheDescriptorsNotSent) {
  Pair pair;
  SendQueue queue;
  Marker marker;
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(marker.write_end));
  queue.Append("x", std::move(fds));
  queue.Clear();
  EXPECT_TRUE(queue.empty());
  char byte;
  // The only write end is closed: the read end sees the end of the pipe.
  EXPECT_EQ(::read(marker.read_end.get(), &byte, 1), 0);
}

}  // namespace
}  // namespace internal
}  // namespace parallel
