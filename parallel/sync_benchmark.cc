// The primitives of parallel/sync.h between two processes: Queue put+get
// round trip, Pipe round trip, Lock uncontended and contended by two
// processes, Event ping-pong. tools/bench/sync_vs_python.sh runs it next to
// Python's multiprocessing equivalents and prints the ratios.
//
// BM_Floor* are not locks: a bare compare-and-swap to take a word and an
// exchange to give it back (the least a lock that can wake a sleeper on
// release must do), alone and with a second process doing the same to the
// same shared word. They are the hardware's floor for BM_Lock*.
//
//   bazel run -c opt //parallel:sync_benchmark

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>

#include "benchmark/benchmark.h"
#include "parallel/sync.h"

namespace {

// Forks `body` as a helper process for one benchmark; Stop() waits for it.
class Helper {
 public:
  explicit Helper(const std::function<void()>& body) : pid_(fork()) {
    if (pid_ == 0) {
      body();
      _exit(0);
    }
  }
  ~Helper() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void Stop() {
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_;
};

// Put to the helper, which Gets and Puts back; Get the answer.
void BM_QueueRoundTrip(benchmark::State& state) {
  parallel::Queue<int> there;
  parallel::Queue<int> back;
  Helper echo([&] {
    while (true) {
      const int value = *there.Get();
      back.Put(value);
      if (value < 0) return;
    }
  });
  int i = 0;
  for (auto _ : state) {
    there.Put(i++);
    benchmark::DoNotOptimize(*back.Get());
  }
  there.Put(-1);
  (void)back.Get();
  echo.Stop();
}
BENCHMARK(BM_QueueRoundTrip)->UseRealTime();

void BM_PipeRoundTrip(benchmark::State& state) {
  auto pipe = parallel::Pipe<int>();
  Helper echo([&] {
    pipe.first.Close();
    while (true) {
      absl::StatusOr<int> value = pipe.second.Recv();
      if (!value.ok()) return;
      (void)pipe.second.Send(*value);
    }
  });
  pipe.second.Close();
  int i = 0;
  for (auto _ : state) {
    (void)pipe.first.Send(i++);
    benchmark::DoNotOptimize(*pipe.first.Recv());
  }
  pipe.first.Close();
  echo.Stop();
}
BENCHMARK(BM_PipeRoundTrip)->UseRealTime();

void BM_LockUncontended(benchmark::State& state) {
  parallel::Lock lock;
  for (auto _ : state) {
    lock.lock();
    lock.unlock();
  }
}
BENCHMARK(BM_LockUncontended);

// Acquire+release here while another process does the same in a loop.
void BM_LockContendedByTwoProcesses(benchmark::State& state) {
  parallel::Lock lock;
  parallel::Event stop;
  parallel::Event running;
  Helper rival([&] {
    running.Set();
    while (!stop.IsSet()) {
      lock.lock();
      lock.unlock();
    }
  });
  running.Wait();
  for (auto _ : state) {
    lock.lock();
    lock.unlock();
  }
  stop.Set();
  rival.Stop();
}
BENCHMARK(BM_LockContendedByTwoProcesses)->UseRealTime();

// Set "ping"; the helper waits for it, clears it and sets "pong".
void BM_EventPingPong(benchmark::State& state) {
  parallel::Event ping;
  parallel::Event pong;
  parallel::Event stop;
  Helper player([&] {
    while (true) {
      ping.Wait();
      ping.Clear();
      if (stop.IsSet()) return;
      pong.Set();
    }
  });
  for (auto _ : state) {
    ping.Set();
    pong.Wait();
    pong.Clear();
  }
  stop.Set();
  ping.Set();
  player.Stop();
}
BENCHMARK(BM_EventPingPong)->UseRealTime();

// A word in memory shared with forked helpers, for the floor benchmarks.
class SharedWord {
 public:
  SharedWord()
      : word_(static_cast<std::atomic<uint32_t>*>(
            mmap(nullptr, sizeof(std::atomic<uint32_t>), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0))) {
    if (word_ == MAP_FAILED) abort();
    new (word_) std::atomic<uint32_t>(0);
  }
  ~SharedWord() { munmap(word_, sizeof(*word_)); }
  // Takes the word (spinning while another process has it), then gives it
  // back: CAS 0 -> owner, exchange -> 0.
  void TakeAndGive(uint32_t owner) {
    uint32_t expected = 0;
    while (!word_->compare_exchange_weak(expected, owner,
                                         std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      expected = 0;
    }
    benchmark::DoNotOptimize(word_->exchange(0, std::memory_order_release));
  }

 private:
  std::atomic<uint32_t>* word_;
};

void BM_FloorLockWordUncontended(benchmark::State& state) {
  SharedWord word;
  for (auto _ : state) word.TakeAndGive(1);
}
BENCHMARK(BM_FloorLockWordUncontended);

void BM_FloorLockWordContendedByTwoProcesses(benchmark::State& state) {
  SharedWord word;
  parallel::Event stop;
  parallel::Event running;
  Helper rival([&] {
    running.Set();
    while (!stop.IsSet()) word.TakeAndGive(2);
  });
  running.Wait();
  for (auto _ : state) word.TakeAndGive(1);
  stop.Set();
  rival.Stop();
}
BENCHMARK(BM_FloorLockWordContendedByTwoProcesses)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
