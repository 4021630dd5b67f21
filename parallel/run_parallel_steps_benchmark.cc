// Per-step overhead and replay throughput of RunParallelSteps, next to a bare
// baseline written directly against the OS in the same binary.
//
//   bazel run -c opt //parallel:run_parallel_steps_benchmark
//
// BM_BareForkLoop is the floor: fork, the child writes a line into a memfd and
// _exits, the parent waitpids and sendfiles the memfd to /dev/null, two
// children at a time. BM_RunParallelSteps does the same work through the
// library (temp-file capture, result record, process group, pidfd, ppoll,
// in-order replay). Compare their per_step counters (wall time) and
// cpu_us_per_step (parent and children together; steadier on a busy machine);
// faults_per_step counts the page faults of parent and children together
// (each costs ~14 us on this project's VMs: BM_ForkWritingPages).

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "parallel/internal/capture.h"
#include "parallel/parallel.h"

namespace {

constexpr int kStepsPerIteration = 200;

// CPU seconds used so far by this process and its reaped children: on a
// shared, noisy machine a steadier measure of the work per step than wall
// time.
double CpuSeconds() {
  double total = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage usage;
    getrusage(who, &usage);
    total += usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
             usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
  }
  return total;
}

// Minor page faults so far, this process and its reaped children.
double Faults() {
  double total = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage usage;
    getrusage(who, &usage);
    total += static_cast<double>(usage.ru_minflt);
  }
  return total;
}

// This process's alone: those a zygote would spare it.
double ParentFaults() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_minflt);
}

// What the counters said when a benchmark's clock started.
struct Start {
  double cpu = CpuSeconds();
  double faults = Faults();
  double parent_faults = ParentFaults();
};

void ReportPerStep(benchmark::State& state, const Start& start) {
  const double steps =
      static_cast<double>(state.iterations()) * kStepsPerIteration;
  state.counters["per_step"] = benchmark::Counter(
      steps, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  // Parent and children together, microseconds of CPU per step.
  state.counters["cpu_us_per_step"] = (CpuSeconds() - start.cpu) * 1e6 / steps;
  state.counters["faults_per_step"] = (Faults() - start.faults) / steps;
  state.counters["parent_faults_per_step"] =
      (ParentFaults() - start.parent_faults) / steps;
}
constexpr int kSlots = 2;

// The floor's loop: `spawn(fd)` starts a child that writes a line into the
// memfd `fd` and exits, and returns its pid; two children at a time, each
// waited for and its output copied to /dev/null in start order.
template <typename Spawn>
void ForkLoop(benchmark::State& state, Spawn spawn) {
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  for (auto _ : state) {
    int running = 0;
    int started = 0;
    pid_t pids[kSlots];
    int fds[kSlots];
    while (started < kStepsPerIteration || running > 0) {
      while (running < kSlots && started < kStepsPerIteration) {
        const int fd = memfd_create("bare", MFD_CLOEXEC);
        pids[running] = spawn(fd);
        fds[running] = fd;
        ++running;
        ++started;
      }
      // Replay in order: wait for the oldest, copy its output, drop it.
      waitpid(pids[0], nullptr, 0);
      off_t offset = 0;
      sendfile(dev_null, fds[0], &offset, 1 << 20);
      close(fds[0]);
      for (int i = 1; i < running; ++i) {
        pids[i - 1] = pids[i];
        fds[i - 1] = fds[i];
      }
      --running;
    }
  }
  close(dev_null);
}

// What a child of the floor does: its line into `fd`, then _exit.
[[noreturn]] void WriteLineAndExit(int fd) {
  dup2(fd, 1);
  const char line[] = "step output\n";
  (void)!write(1, line, sizeof(line) - 1);
  _exit(0);
}

void BM_BareForkLoop(benchmark::State& state) {
  const Start start;
  ForkLoop(state, [](int fd) {
    const pid_t pid = fork();
    if (pid == 0) WriteLineAndExit(fd);
    return pid;
  });
  ReportPerStep(state, start);
}
BENCHMARK(BM_BareForkLoop)->Unit(benchmark::kMillisecond)->UseRealTime();

// What a page a child touches costs: a child that writes (or only reads)
// state.range(0) pages of memory the parent touched before the fork, one
// child at a time. Compare /0 with /40. A written page is a copy-on-write
// fault; a read one is neither copied nor a fault the guest sees, but on a
// VM whose hypervisor keeps shadow page tables each page a new process
// touches first still costs it.
void ForkTouchingPages(benchmark::State& state, bool write) {
  const int pages = static_cast<int>(state.range(0));
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<char> memory((pages + 1) * page, 1);
  for (auto _ : state) {
    const pid_t pid = fork();
    if (pid == 0) {
      unsigned sum = 0;
      for (size_t i = 0; i < static_cast<size_t>(pages); ++i) {
        volatile char& byte = memory[i * page];
        if (write) {
          byte = 2;
        } else {
          sum += static_cast<unsigned char>(byte);
        }
      }
      _exit(write || sum > 0 || pages == 0 ? 0 : 1);
    }
    waitpid(pid, nullptr, 0);
  }
}

void BM_ForkWritingPages(benchmark::State& state) {
  ForkTouchingPages(state, /*write=*/true);
}
BENCHMARK(BM_ForkWritingPages)
    ->Arg(0)
    ->Arg(40)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_ForkReadingPages(benchmark::State& state) {
  ForkTouchingPages(state, /*write=*/false);
}
BENCHMARK(BM_ForkReadingPages)
    ->Arg(0)
    ->Arg(40)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// The bare loop again, with the forks done by a zygote: a process forked
// once, quiet and single-threaded, that forks each child on request with
// CLONE_PARENT (so the child is still this process's, for waitpid) and
// sends back its pid. The memfd goes to it with the request (SCM_RIGHTS).
// This is the most a zygote could do for the library: the caller no longer
// forks, so it takes no copy-on-write faults on pages its children share,
// and what each fork copies is the zygote's memory as at its start — at
// the cost of two socket messages per child.
void BM_ZygoteForkLoop(benchmark::State& state) {
  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets) != 0) {
    state.SkipWithError("socketpair");
    return;
  }
  const pid_t zygote = fork();
  if (zygote == 0) {
    close(sockets[0]);
    while (true) {
      char byte;
      char control[CMSG_SPACE(sizeof(int))];
      iovec iov = {&byte, 1};
      msghdr message = {};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      if (recvmsg(sockets[1], &message, 0) <= 0) _exit(0);
      int fd;
      std::memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&message)), sizeof(fd));
      const pid_t pid = static_cast<pid_t>(
          syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0));
      if (pid == 0) WriteLineAndExit(fd);
      close(fd);
      (void)!send(sockets[1], &pid, sizeof(pid), 0);
    }
  }
  close(sockets[1]);
  const Start start;
  ForkLoop(state, [&](int fd) {
    char byte = 0;
    char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov = {&byte, 1};
    msghdr message = {};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd, sizeof(fd));
    pid_t pid = -1;
    if (sendmsg(sockets[0], &message, 0) != 1 ||
        recv(sockets[0], &pid, sizeof(pid), 0) != sizeof(pid)) {
      return pid_t{-1};
    }
    return pid;
  });
  // Reaped first, so that its CPU time (the forks) counts.
  close(sockets[0]);
  waitpid(zygote, nullptr, 0);
  ReportPerStep(state, start);
}
BENCHMARK(BM_ZygoteForkLoop)->Unit(benchmark::kMillisecond)->UseRealTime();

// What the caller's resident memory costs each fork: fork, _exit, waitpid
// with state.range(0) MiB of the caller's heap touched (page tables copied
// at the fork, torn down at the child's exit). A run whose caller holds
// more per step (its closures, their captures) pays this at every step.
void BM_ForkWithResidentMiB(benchmark::State& state) {
  std::vector<char> resident(static_cast<size_t>(state.range(0)) << 20, 1);
  benchmark::DoNotOptimize(resident.data());
  for (auto _ : state) {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, nullptr, 0);
  }
}
BENCHMARK(BM_ForkWithResidentMiB)
    ->Arg(0)
    ->Arg(8)
    ->Arg(32)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Steps that print their line with stdio, as most steps do: the first
// fputs in a child allocates stdout's buffer (an fstat and a malloc).
void BM_RunParallelSteps(benchmark::State& state) {
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  parallel::ParallelOptions options;
  options.max_parallel = kSlots;
  options.output_fd = dev_null;
  std::vector<std::function<void()>> steps(
      kStepsPerIteration, [] { std::fputs("step output\n", stdout); });
  const Start start;
  for (auto _ : state) {
    parallel::RunParallelSteps(steps, options);
  }
  close(dev_null);
  ReportPerStep(state, start);
}
BENCHMARK(BM_RunParallelSteps)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same work in each child as BM_BareForkLoop's (one write(2) of the
// line), so that the difference is the library's alone.
void BM_RunParallelStepsSameWork(benchmark::State& state) {
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  parallel::ParallelOptions options;
  options.max_parallel = kSlots;
  options.output_fd = dev_null;
  std::vector<std::function<void()>> steps(kStepsPerIteration, [] {
    const char line[] = "step output\n";
    (void)!write(1, line, sizeof(line) - 1);
  });
  const Start start;
  for (auto _ : state) {
    parallel::RunParallelSteps(steps, options);
  }
  close(dev_null);
  ReportPerStep(state, start);
}
BENCHMARK(BM_RunParallelStepsSameWork)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Scale: N trivial steps in one call, two at a time. Linear time means the
// same per_step at 10,000 and 100,000 (each 100,000 run takes about five
// minutes on a 2-core VM).
// Second argument: 0, the caller keeps its vector of N std::functions (32
// bytes each, 3.2 MB at 100,000) while the run forks; 1, it hands the
// vector over (std::move), and RunParallelSteps frees it before the run —
// every fork copies the page tables of the caller's memory
// (BM_ForkWithResidentMiB).
void BM_ManySteps(benchmark::State& state) {
  const int count = static_cast<int>(state.range(0));
  const bool hand_over = state.range(1) != 0;
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  parallel::ParallelOptions options;
  options.max_parallel = kSlots;
  options.output_fd = dev_null;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<std::function<void()>> steps(
        count, [] { std::fputs("step output\n", stdout); });
    state.ResumeTiming();
    if (hand_over) {
      parallel::RunParallelSteps(std::move(steps), options);
    } else {
      parallel::RunParallelSteps(steps, options);
    }
  }
  close(dev_null);
  state.counters["per_step"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * count,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ManySteps)
    ->Args({10000, 0})
    ->Args({100000, 0})
    ->Args({10000, 1})
    ->Args({100000, 1})
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

// Replays 8 captured outputs of 50 MB each into /dev/null: the kernel copy the
// engine uses for every step that finished ahead of the head.
void BM_ReplayToDevNull(benchmark::State& state) {
  constexpr int kFiles = 8;
  constexpr uint64_t kBytes = 50 << 20;
  std::vector<parallel::internal::UniqueFd> files;
  const std::string chunk(1 << 20, 'r');
  for (int i = 0; i < kFiles; ++i) {
    auto fd = parallel::internal::CreateCaptureFile(
        parallel::internal::ResolveTempDir(""));
    if (!fd.ok()) {
      state.SkipWithError("cannot create capture file");
      return;
    }
    for (uint64_t done = 0; done < kBytes; done += chunk.size()) {
      (void)!write(fd->get(), chunk.data(), chunk.size());
    }
    files.push_back(*std::move(fd));
  }
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  for (auto _ : state) {
    for (const auto& file : files) {
      benchmark::DoNotOptimize(
          parallel::internal::CopyRange(file.get(), 0, kBytes, dev_null));
    }
  }
  close(dev_null);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kFiles *
                          kBytes);
}
BENCHMARK(BM_ReplayToDevNull)->Unit(benchmark::kMillisecond)->UseRealTime();

// End to end: 8 steps each printing 50 MB, replayed into /dev/null.
void BM_EightStepsOf50MB(benchmark::State& state) {
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  parallel::ParallelOptions options;
  options.output_fd = dev_null;
  std::vector<std::function<void()>> steps(8, [] {
    const std::string chunk(1 << 20, 'o');
    for (int i = 0; i < 50; ++i) (void)!write(1, chunk.data(), chunk.size());
  });
  for (auto _ : state) parallel::RunParallelSteps(steps, options);
  close(dev_null);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 8 *
                          (50 << 20));
}
BENCHMARK(BM_EightStepsOf50MB)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
