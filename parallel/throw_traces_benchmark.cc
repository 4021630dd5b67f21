// The cost of //parallel:throw_traces: the same throw-and-catch loop, built
// twice — //parallel:throw_benchmark without the hook and
// //parallel:throw_traces_benchmark with it. Compare their times.
//
//   bazel run -c opt //parallel:throw_benchmark
//   bazel run -c opt //parallel:throw_traces_benchmark

#include <stdexcept>

#include "benchmark/benchmark.h"

namespace {

[[gnu::noinline]] void Throw(int depth) {
  if (depth > 0) {
    Throw(depth - 1);
    benchmark::ClobberMemory();
    return;
  }
  throw std::runtime_error("benchmark");
}

void BM_ThrowAndCatch(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  for (auto _ : state) {
    try {
      Throw(depth);
    } catch (const std::runtime_error& e) {
      benchmark::DoNotOptimize(e.what());
    }
  }
}
BENCHMARK(BM_ThrowAndCatch)->Arg(1)->Arg(20);

}  // namespace

BENCHMARK_MAIN();
