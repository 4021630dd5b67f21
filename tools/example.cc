// A tour of parallel::RunParallelSteps: three steps run at once, their output
// is replayed in order as if they had run one after another, and the one that
// fails is reported with its type, message and stack once all output is out.
//
//   bazel run //tools:example

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <stdexcept>

#include "parallel/parallel.h"

namespace {

void Step(const char* name, int millis) {
  for (int i = 1; i <= 3; ++i) {
    std::printf("%s: line %d of 3 (pid %d)\n", name, i, getpid());
    std::fflush(stdout);
    usleep(millis * 1000);
  }
}

}  // namespace

int main() {
  std::printf(
      "Three steps in parallel; the slowest is first, yet the output "
      "reads in step order.\n\n");
  std::fflush(stdout);
  try {
    parallel::RunParallelSteps({
        [] { Step("compile", 300); },
        [] { Step("lint", 50); },
        [] {
          Step("test", 100);
          throw std::runtime_error("2 of 40 tests failed");
        },
    });
  } catch (const parallel::BackgroundFailure& failure) {
    std::cout << "\nBackgroundFailure with " << failure.exc_infos().size()
              << " failure(s):\n"
              << failure.ToSummaryString() << "\nFull report:\n"
              << failure.what();
    return 1;
  }
  return 0;
}
