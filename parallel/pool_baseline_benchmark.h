// The physical floor of a pool of pre-forked workers, for the benchmarks of
// the executor and the task runners: two workers forked once, answering
// length-prefixed requests (an int) over a socketpair each, every reply
// carrying the offset of the worker's output file after the input (the
// per-input output offsets a capturing pool needs). No judging, no replay,
// no timeouts: what our pools do on top is what they cost over it.

#ifndef PARALLEL_POOL_BASELINE_BENCHMARK_H_
#define PARALLEL_POOL_BASELINE_BENCHMARK_H_

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace parallel_bench {

class PoolBaseline {
 public:
  PoolBaseline() {
    for (int w = 0; w < 2; ++w) {
      int pair[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        abort();
      }
      pids_[w] = fork();
      if (pids_[w] == 0) {
        close(pair[0]);
        for (int earlier = 0; earlier < w; ++earlier) close(sockets_[earlier]);
        Worker(pair[1]);
      }
      close(pair[1]);
      sockets_[w] = pair[0];
    }
  }
  ~PoolBaseline() {
    for (int w = 0; w < 2; ++w) {
      close(sockets_[w]);
      waitpid(pids_[w], nullptr, 0);
    }
  }
  PoolBaseline(const PoolBaseline&) = delete;
  PoolBaseline& operator=(const PoolBaseline&) = delete;

  void Send(int worker, int value) {
    char request[kRequestSize];
    PutRequest(request, value);
    if (write(sockets_[worker], request, sizeof(request)) != sizeof(request)) {
      abort();
    }
  }
  int Receive(int worker) {
    char reply[kReplySize];
    if (read(sockets_[worker], reply, sizeof(reply)) != sizeof(reply)) abort();
    int value;
    std::memcpy(&value, reply + sizeof(uint32_t), sizeof(value));
    return value;
  }

  // `tasks` requests, both workers kept busy with `depth` in flight each
  // (1: the floor of a pool that waits for each answer before it sends the
  // next request; deeper: of one that queues requests in the workers'
  // sockets, as ours do, the requests freed by one poll sent in one write).
  // Returns the sum of the answers.
  int64_t Map(int tasks, int depth = 1) {
    int sent = 0;
    int received = 0;
    int in_flight[2] = {0, 0};
    int64_t sum = 0;
    auto fill = [&](int w) {
      char batch[64 * kRequestSize];
      int count = 0;
      while (in_flight[w] < depth && count < 64 && sent < tasks) {
        PutRequest(batch + count * kRequestSize, sent++);
        ++count;
        ++in_flight[w];
      }
      const ssize_t size = count * static_cast<ssize_t>(kRequestSize);
      if (count > 0 && write(sockets_[w], batch, size) != size) abort();
    };
    fill(0);
    fill(1);
    while (received < tasks) {
      pollfd fds[2] = {{sockets_[0], POLLIN, 0}, {sockets_[1], POLLIN, 0}};
      poll(fds, 2, -1);
      for (int w = 0; w < 2; ++w) {
        if ((fds[w].revents & POLLIN) == 0) continue;
        // Every whole reply there is, in one read (replies are sent whole,
        // one write each, so a read never ends inside one).
        char replies[64 * kReplySize];
        const size_t room = std::min(in_flight[w], 64) * kReplySize;
        const ssize_t n = read(sockets_[w], replies, room);
        if (n <= 0 || n % kReplySize != 0) abort();
        for (ssize_t at = 0; at < n; at += kReplySize) {
          int value;
          std::memcpy(&value, replies + at + sizeof(uint32_t), sizeof(value));
          sum += value;
          ++received;
          --in_flight[w];
        }
        fill(w);
      }
    }
    return sum;
  }

 private:
  static constexpr size_t kRequestSize = sizeof(uint32_t) + sizeof(int);
  static constexpr size_t kReplySize =
      sizeof(uint32_t) + sizeof(int) + sizeof(uint64_t);

  static void PutRequest(char* request, int value) {
    const uint32_t length = sizeof(int);
    std::memcpy(request, &length, sizeof(length));
    std::memcpy(request + sizeof(length), &value, sizeof(value));
  }

  // Request = u32 length + an int; reply = u32 length + the int + the u64
  // offset of its output file.
  // Reads every request there is at once, answers each with a write of its
  // own (as it would after running each).
  [[noreturn]] static void Worker(int socket) {
    const int output = memfd_create("baseline-output", MFD_CLOEXEC);
    char requests[64 * kRequestSize];
    size_t have = 0;
    size_t used = 0;
    while (true) {
      if (used == have) {
        const ssize_t n = read(socket, requests, sizeof(requests));
        if (n <= 0 || n % kRequestSize != 0) _exit(0);
        have = static_cast<size_t>(n);
        used = 0;
      }
      uint32_t length;
      int value;
      std::memcpy(&length, requests + used, sizeof(length));
      std::memcpy(&value, requests + used + sizeof(length), sizeof(value));
      used += kRequestSize;
      if (length != sizeof(value)) _exit(0);
      char reply[kReplySize];
      const uint32_t reply_length = sizeof(int) + sizeof(uint64_t);
      const uint64_t offset = lseek(output, 0, SEEK_CUR);
      std::memcpy(reply, &reply_length, sizeof(reply_length));
      std::memcpy(reply + sizeof(uint32_t), &value, sizeof(value));
      std::memcpy(reply + sizeof(uint32_t) + sizeof(int), &offset,
                  sizeof(offset));
      if (write(socket, reply, sizeof(reply)) != sizeof(reply)) _exit(1);
    }
  }

  pid_t pids_[2];
  int sockets_[2];
};

}  // namespace parallel_bench

#endif  // PARALLEL_POOL_BASELINE_BENCHMARK_H_
