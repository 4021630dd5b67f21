// Per-input overhead of BackgroundTaskRunner and RunTasksInProcessPool with
// 2 workers and a trivial task, per-input output capture included, and
// BM_CPoolBaseline, the floor of the same work (pool_baseline_benchmark.h:
// two pre-forked C workers, length-prefixed requests over socketpairs,
// output offsets in each reply).
//
//   bazel run -c opt //parallel:task_runner_benchmark
//   tools/bench/pool_vs_python.sh   # the same work in Python's multiprocessing

#include <fcntl.h>
#include <unistd.h>

#include "benchmark/benchmark.h"
#include "parallel/pool_baseline_benchmark.h"
#include "parallel/task_runner.h"

namespace {

// Reports the time per input as the counter "per_input".
void PerInput(benchmark::State& state, int inputs) {
  state.counters["per_input"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * inputs,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_TrivialInputs(benchmark::State& state) {
  const int inputs = static_cast<int>(state.range(0));
  const int dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  for (auto _ : state) {
    parallel::BackgroundTaskRunner<int>::Options options;
    options.processes = 2;
    options.output_fd = dev_null;
    parallel::BackgroundTaskRunner<int> runner(
        [](int i) { benchmark::DoNotOptimize(i); }, options);
    for (int i = 0; i < inputs; ++i) runner.Put(i);
    runner.Wait();
  }
  close(dev_null);
  PerInput(state, inputs);
}
BENCHMARK(BM_TrivialInputs)
    ->Arg(1)  // the start and end of the runner, for the marginal cost
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_RunTasksInProcessPool(benchmark::State& state) {
  const int inputs = static_cast<int>(state.range(0));
  std::vector<std::tuple<int>> args;
  for (int i = 0; i < inputs; ++i) args.emplace_back(i);
  parallel::PoolOptions options;
  options.processes = 2;
  for (auto _ : state) {
    benchmark::DoNotOptimize(parallel::RunTasksInProcessPool(
        [](int i) { return i * 2; }, args, options));
  }
  PerInput(state, inputs);
}
BENCHMARK(BM_RunTasksInProcessPool)
    ->Arg(1)  // the start and end of the runner, for the marginal cost
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_CPoolBaseline(benchmark::State& state) {
  const int inputs = static_cast<int>(state.range(0));
  parallel_bench::PoolBaseline baseline;
  for (auto _ : state) benchmark::DoNotOptimize(baseline.Map(inputs));
  PerInput(state, inputs);
}
BENCHMARK(BM_CPoolBaseline)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
