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
    char request[sizeof(uint32_t) + sizeof(int)];
    const uint32_t length = sizeof(int);
    std::memcpy(request, &length, sizeof(length));
    std::memcpy(request + sizeof(length), &value, sizeof(value));
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

  // `tasks` requests, both workers kept busy with one in flight each: the
  // floor of a pool's map. Returns the sum of the answers.
  int64_t Map(int tasks) {
    int sent = 0;
    int received = 0;
    int64_t sum = 0;
    for (int w = 0; w < 2 && sent < tasks; ++w) Send(w, sent++);
    while (received < tasks) {
      pollfd fds[2] = {{sockets_[0], POLLIN, 0}, {sockets_[1], POLLIN, 0}};
      poll(fds, 2, -1);
      for (int w = 0; w < 2; ++w) {
        if ((fds[w].revents & POLLIN) == 0) continue;
        sum += Receive(w);
        ++received;
        if (sent < tasks) Send(w, sent++);
      }
    }
    return sum;
  }

 private:
  static constexpr size_t kReplySize =
      sizeof(uint32_t) + sizeof(int) + sizeof(uint64_t);

  // Request = u32 length + an int; reply = u32 length + the int + the u64
  // offset of its output file.
  [[noreturn]] static void Worker(int socket) {
    const int output = memfd_create("baseline-output", MFD_CLOEXEC);
    while (true) {
      uint32_t length;
      int value;
      if (read(socket, &length, sizeof(length)) != sizeof(length) ||
          length != sizeof(value) ||
          read(socket, &value, sizeof(value)) != sizeof(value)) {
        _exit(0);
      }
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
