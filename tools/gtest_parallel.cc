// gtest_parallel: runs the tests of GoogleTest binaries as parallel steps,
// one process per test, with google/gtest-parallel's flags.
//
//   gtest_parallel [flags] BINARY... [-- ARGS FOR EVERY TEST]
//   gtest_parallel -w 8 --retry_failed=2 --junit=tests.xml out/unit_tests
//
// Each binary's tests come from `--gtest_list_tests` (DISABLED_ tests left
// out unless --gtest_also_run_disabled_tests); each runs as
// `BINARY --gtest_filter=Suite.Test` (a whole suite with
// --serialize_test_cases), longest first by the times saved last run
// ($XDG_CACHE_HOME or ~/.cache, parallel/gtest-parallel-times), tests never
// timed first. GTEST_SHARD_INDEX, GTEST_TOTAL_SHARDS and GTEST_OUTPUT are
// removed from the tests' environment. On a terminal a [done/total] status
// line is drawn; at the end the output of every failing test is printed,
// grouped, in order, then a summary. A test that fails and then passes on a
// retry is reported as flaky.
//
// Exit status: 0 iff every test passed (its last attempt, with retries);
// 1 otherwise; 255 on bad usage or a binary whose tests cannot be listed,
// with a one-line error; killed by the signal if interrupted.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "parallel/parallel.h"
#include "tools/gtest_parallel_lib.h"
#include "tools/reports.h"

namespace {

using tools::gtest::Options;
using tools::gtest::Task;

constexpr int kUsageError = 255;

constexpr char kUsage[] =
    R"(usage: gtest_parallel [flags] BINARY... [-- ARGS FOR EVERY TEST]

Runs every test of the GoogleTest binaries in its own process, several at
once; prints the output of the failing tests, then a summary.

flags:
  -w N, --workers=N           tests at once (default: number of CPUs)
  -r N, --repeat=N            run each test N times
  --retry_failed=N            run a failed test up to N more times (a test
                              that then passes is reported as flaky)
  --gtest_filter=PATTERN      run the tests that match (gtest's syntax)
  --gtest_also_run_disabled_tests
  --serialize_test_cases      run the tests of a suite one after another,
                              in one process
  -d DIR, --output_dir=DIR    write each test's output to DIR
  --print_test_times          list each test's time at the end
  --shard_count=N, --shard_index=I
                              run only the I-th of N slices of the tests
  --dump_json_test_results=FILE
                              results in gtest-parallel's JSON format
  --junit=FILE                results as JUnit XML
  --trace=FILE                a Chrome trace-event JSON of the test
                              processes (Perfetto, chrome://tracing)
  --timeline=FILE             the same as one self-contained HTML timeline
  --timeout=SECONDS           kill a test that runs longer (each test then
                              runs alone unless --batch_size is given, and
                              the timeout is for the whole batch)
  --batch_size=N|auto         tests per process; auto (the default): about
                              one process per worker, balanced by the
                              saved times, or 1 with --timeout; 1: each
                              test alone (gtest-parallel's isolation). A
                              crash or hang reruns the rest of its batch
                              one test per process; retries run alone
  --help                      show this help
)";

[[noreturn]] void UsageError(const std::string& message) {
  std::cerr << "gtest_parallel: " << message
            << " (see gtest_parallel --help)\n";
  std::exit(kUsageError);
}

int ParseCount(const std::string& flag, const std::string& value, int min) {
  int n = 0;
  if (!absl::SimpleAtoi(value, &n) || n < min) {
    UsageError(absl::StrCat(flag, " wants a whole number >= ", min, ", got '",
                            value, "'"));
  }
  return n;
}

// What the flags cannot say alone: binaries to run, a shard that exists, an
// output directory that takes files.
void Validate(const Options& options) {
  if (options.binaries.empty()) UsageError("no test binary given");
  if (options.shard_index >= options.shard_count) {
    UsageError(
        absl::StrCat("--shard_index=", options.shard_index,
                     " must be below --shard_count=", options.shard_count));
  }
  for (const std::string& binary : options.binaries) {
    if (::access(binary.c_str(), X_OK) != 0) {
      UsageError(absl::StrCat("'", binary, "' is not an executable file"));
    }
  }
  if (!options.output_dir.empty()) {
    ::mkdir(options.output_dir.c_str(), 0755);
    struct stat st;
    if (::stat(options.output_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        ::access(options.output_dir.c_str(), W_OK) != 0) {
      UsageError(absl::StrCat("--output_dir '", options.output_dir,
                              "' is not a writable directory"));
    }
  }
}

Options ParseFlags(int argc, char** argv) {
  Options options;
  options.workers = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) options.test_args.push_back(argv[i]);
      break;
    }
    if (arg.empty() || arg[0] != '-') {
      options.binaries.push_back(arg);
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    auto take = [&]() -> std::string {
      if (value) return *value;
      if (i + 1 >= argc) UsageError(name + " wants a value");
      return argv[++i];
    };
    if (name == "--help" || name == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (name == "-w" || name == "--workers") {
      options.workers = ParseCount(name, take(), 1);
    } else if (name == "-r" || name == "--repeat") {
      options.repeat = ParseCount(name, take(), 1);
    } else if (name == "--retry_failed") {
      options.retry_failed = ParseCount(name, take(), 0);
    } else if (name == "--gtest_filter") {
      options.gtest_filter = take();
    } else if (name == "--gtest_also_run_disabled_tests") {
      options.also_run_disabled = true;
    } else if (name == "--serialize_test_cases") {
      options.serialize_test_cases = true;
    } else if (name == "-d" || name == "--output_dir") {
      options.output_dir = take();
    } else if (name == "--print_test_times") {
      options.print_test_times = true;
    } else if (name == "--shard_count") {
      options.shard_count = ParseCount(name, take(), 1);
    } else if (name == "--shard_index") {
      options.shard_index = ParseCount(name, take(), 0);
    } else if (name == "--dump_json_test_results") {
      options.json = take();
    } else if (name == "--batch_size") {
      const std::string text = take();
      if (text == "auto") {
        options.batch_size = Options::kAutoBatch;
      } else if (!absl::SimpleAtoi(text, &options.batch_size) ||
                 options.batch_size < 1) {
        UsageError(absl::StrCat(name,
                                " wants a whole number >= 1 or 'auto', "
                                "got '",
                                text, "'"));
      }
    } else if (name == "--junit") {
      options.junit = take();
    } else if (name == "--trace") {
      options.trace = take();
    } else if (name == "--timeline") {
      options.timeline = take();
    } else if (name == "--timeout") {
      double seconds = 0;
      const std::string text = take();
      if (!absl::SimpleAtod(text, &seconds) || seconds <= 0) {
        UsageError(absl::StrCat(name,
                                " wants a positive number of seconds, "
                                "got '",
                                text, "'"));
      }
      options.timeout = absl::Seconds(seconds);
    } else {
      UsageError(absl::StrCat("unknown flag '", arg, "'"));
    }
  }
  Validate(options);
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseFlags(argc, argv);
  // The tests must not shard themselves or write gtest's own reports where
  // the caller asked for ours.
  for (const char* name :
       {"GTEST_SHARD_INDEX", "GTEST_TOTAL_SHARDS", "GTEST_OUTPUT"}) {
    ::unsetenv(name);
  }
  absl::StatusOr<std::vector<Task>> tasks = tools::gtest::FindTasks(options);
  if (!tasks.ok()) {
    std::cerr << "gtest_parallel: " << tasks.status().message() << "\n";
    return kUsageError;
  }
  tools::gtest::Runner runner(options, *std::move(tasks));
  const int interrupted = runner.Run();
  runner.PrintFailures(std::cout);
  runner.PrintSummary(std::cout);
  runner.SaveTimes();
  bool reports_ok = runner.WriteReports();
  if (interrupted != 0) {
    std::fflush(nullptr);
    signal(interrupted, SIG_DFL);
    raise(interrupted);
    return 128 + interrupted;
  }
  return runner.AllPassed() && reports_ok ? 0 : 1;
}
