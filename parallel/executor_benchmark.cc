// Per-task overhead of ProcessPoolExecutor with 2 workers and a trivial task
// (output capture included), against a C baseline of the same design: two
// pre-forked workers answering length-prefixed requests over a socketpair,
// each reply carrying the offset of the worker's output file after the
// input (per-input output offsets) — the physical floor of a pool of
// pre-forked workers.
//
//   bazel run -c opt //parallel:executor_benchmark
//   tools/bench/executor_vs_python.sh   # with Python's pools, same run

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"
#include "parallel/executor.h"

namespace {

int Identity(int i) { return i; }

void PerTask(benchmark::State& state, int tasks) {
  state.counters["per_task"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * tasks,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

parallel::ExecutorOptions Quiet(int dev_null) {
  parallel::ExecutorOptions options;
  options.max_workers = 2;
  options.output_fd = dev_null;
  return options;
}

// Submit, then Get, one task at a time: the round trip.
void BM_ExecutorSubmitGet(benchmark::State& state) {
  const int tasks = static_cast<int>(state.range(0));
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  parallel::ProcessPoolExecutor executor(Quiet(dev_null));
  for (auto _ : state) {
    for (int i = 0; i < tasks; ++i) {
      benchmark::DoNotOptimize(*executor.Submit(Identity, i).Get());
    }
  }
  executor.Shutdown();
  close(dev_null);
  PerTask(state, tasks);
}
BENCHMARK(BM_ExecutorSubmitGet)
    ->Arg(2000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_ExecutorMap(benchmark::State& state) {
  const int tasks = static_cast<int>(state.range(0));
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  std::vector<int> inputs(tasks);
  for (int i = 0; i < tasks; ++i) inputs[i] = i;
  parallel::ProcessPoolExecutor executor(Quiet(dev_null));
  for (auto _ : state) {
    benchmark::DoNotOptimize(executor.Map(Identity, inputs));
  }
  executor.Shutdown();
  close(dev_null);
  PerTask(state, tasks);
}
BENCHMARK(BM_ExecutorMap)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The C baseline's worker: request = u32 length + payload (an int), reply =
// u32 length + payload (the int) + u64 offset of its output file.
[[noreturn]] void BaselineWorker(int socket) {
  const int output = memfd_create("baseline-output", MFD_CLOEXEC);
  while (true) {
    uint32_t length;
    int value;
    if (read(socket, &length, sizeof(length)) != sizeof(length) ||
        length != sizeof(value) ||
        read(socket, &value, sizeof(value)) != sizeof(value)) {
      _exit(0);
    }
    char reply[sizeof(uint32_t) + sizeof(int) + sizeof(uint64_t)];
    const uint32_t reply_length = sizeof(int) + sizeof(uint64_t);
    const uint64_t offset = lseek(output, 0, SEEK_CUR);
    std::memcpy(reply, &reply_length, sizeof(reply_length));
    std::memcpy(reply + sizeof(uint32_t), &value, sizeof(value));
    std::memcpy(reply + sizeof(uint32_t) + sizeof(int), &offset,
                sizeof(offset));
    if (write(socket, reply, sizeof(reply)) != sizeof(reply)) _exit(1);
  }
}

class Baseline {
 public:
  Baseline() {
    for (int w = 0; w < 2; ++w) {
      int pair[2];
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
      pids_[w] = fork();
      if (pids_[w] == 0) {
        close(pair[0]);
        for (int earlier = 0; earlier < w; ++earlier) close(sockets_[earlier]);
        BaselineWorker(pair[1]);
      }
      close(pair[1]);
      sockets_[w] = pair[0];
    }
  }
  ~Baseline() {
    for (int w = 0; w < 2; ++w) {
      close(sockets_[w]);
      waitpid(pids_[w], nullptr, 0);
    }
  }
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
    char reply[sizeof(uint32_t) + sizeof(int) + sizeof(uint64_t)];
    if (read(sockets_[worker], reply, sizeof(reply)) != sizeof(reply)) abort();
    int value;
    std::memcpy(&value, reply + sizeof(uint32_t), sizeof(value));
    return value;
  }
  int socket(int worker) const { return sockets_[worker]; }

 private:
  pid_t pids_[2];
  int sockets_[2];
};

// One request at a time, alternating workers: the floor of Submit + Get.
void BM_BaselineRoundTrip(benchmark::State& state) {
  const int tasks = static_cast<int>(state.range(0));
  Baseline baseline;
  for (auto _ : state) {
    for (int i = 0; i < tasks; ++i) {
      baseline.Send(i % 2, i);
      benchmark::DoNotOptimize(baseline.Receive(i % 2));
    }
  }
  PerTask(state, tasks);
}
BENCHMARK(BM_BaselineRoundTrip)
    ->Arg(2000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Both workers kept busy, one request in flight each: the floor of Map.
void BM_BaselineMap(benchmark::State& state) {
  const int tasks = static_cast<int>(state.range(0));
  Baseline baseline;
  for (auto _ : state) {
    int sent = 0;
    int received = 0;
    for (int w = 0; w < 2 && sent < tasks; ++w) baseline.Send(w, sent++);
    while (received < tasks) {
      pollfd fds[2] = {{baseline.socket(0), POLLIN, 0},
                       {baseline.socket(1), POLLIN, 0}};
      poll(fds, 2, -1);
      for (int w = 0; w < 2; ++w) {
        if ((fds[w].revents & POLLIN) == 0) continue;
        benchmark::DoNotOptimize(baseline.Receive(w));
        ++received;
        if (sent < tasks) baseline.Send(w, sent++);
      }
    }
  }
  PerTask(state, tasks);
}
BENCHMARK(BM_BaselineMap)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
