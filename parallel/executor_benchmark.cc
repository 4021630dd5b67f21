// Per-task overhead of ProcessPoolExecutor with 2 workers and a trivial task
// (output capture included), against a C baseline of the same design
// (pool_baseline_benchmark.h): the physical floor of a pool of pre-forked
// workers.
//
//   bazel run -c opt //parallel:executor_benchmark
//   tools/bench/executor_vs_python.sh   # with Python's pools, same run

#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "benchmark/benchmark.h"
#include "parallel/executor.h"
#include "parallel/pool_baseline_benchmark.h"

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

// One request at a time, alternating workers: the floor of Submit + Get.
void BM_BaselineRoundTrip(benchmark::State& state) {
  const int tasks = static_cast<int>(state.range(0));
  parallel_bench::PoolBaseline baseline;
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
  parallel_bench::PoolBaseline baseline;
  for (auto _ : state) benchmark::DoNotOptimize(baseline.Map(tasks));
  PerTask(state, tasks);
}
BENCHMARK(BM_BaselineMap)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Eight requests in flight per worker, as our pool keeps: the floor of a
// pipelined Map.
void BM_BaselinePipelinedMap(benchmark::State& state) {
  const int tasks = static_cast<int>(state.range(0));
  parallel_bench::PoolBaseline baseline;
  for (auto _ : state) benchmark::DoNotOptimize(baseline.Map(tasks, 8));
  PerTask(state, tasks);
}
BENCHMARK(BM_BaselinePipelinedMap)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
