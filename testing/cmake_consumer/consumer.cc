// A program outside this repository's builds: uses the installed library
// through find_package(parallel) or pkg-config (tools/cmake/consumer_test.sh).
#include <cstdio>
#include <string>

#include "parallel/parallel.h"

int main() {
  parallel::RunParallelSteps({
      [] { std::printf("step one\n"); },
      [] { std::printf("step two\n"); },
  });
  {
    parallel::BackgroundTaskRunner<std::string, int>::Options options;
    options.processes = 2;
    parallel::BackgroundTaskRunner<std::string, int> runner(
        [](std::string word, int n) { std::printf("%s %d\n", word.c_str(), n); },
        options);
    runner.Put("input", 1);
    runner.Put("input", 2);
  }
  try {
    parallel::RunParallelSteps({[] { throw std::runtime_error("boom"); }});
  } catch (const parallel::BackgroundFailure& failure) {
    std::printf("caught %zu failure\n", failure.exc_infos().size());
  }
  return 0;
}
