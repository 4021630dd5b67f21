#include "parallel/executor.h"

#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "parallel/internal/capture.h"

namespace parallel {
namespace {

int UsableCpus() {
  cpu_set_t cpus;
  if (::sched_getaffinity(0, sizeof(cpus), &cpus) == 0) {
    const int count = CPU_COUNT(&cpus);
    if (count > 0) return count;
  }
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

internal::PoolConfig ToPoolConfig(const ExecutorOptions& options) {
  if (options.max_workers < 0) {
    throw std::invalid_argument(absl::StrCat(
        "parallel: max_workers must be >= 0 (0 = CPUs), got ",
        options.max_workers));
  }
  if (options.max_tasks_per_worker < 0 || options.max_worker_rss_bytes < 0) {
    throw std::invalid_argument(
        "parallel: max_tasks_per_worker and max_worker_rss_bytes must be >= 0 "
        "(0 = no limit)");
  }
  internal::PoolConfig config;
  config.processes =
      options.max_workers == 0 ? UsableCpus() : options.max_workers;
  config.timeout = options.task_timeout;
  config.silent_timeout = options.silent_timeout;
  config.output_fd = options.output_fd;
  config.combine_stderr = options.combine_stderr;
  config.error_fd = options.error_fd;
  config.replay_in_completion_order =
      options.replay_order == ReplayOrder::kCompletion;
  config.temp_dir = internal::ResolveTempDir(options.temp_dir);
  config.trace_file = options.trace_file;
  // The trace needs every task's report at the end.
  config.forget_ended = options.trace_file.empty();
  config.keep_values = true;
  config.initializer = options.initializer;
  // Each worker holds up to kLanes tasks at once (the pool's default
  // depth): it never waits for the loop between tasks. A task it has not
  // started is withdrawn exactly when cancelled (claims.h), so kIfPending
  // holds, and taken by a worker that ran out of tasks.
  config.max_inputs_per_worker = options.max_tasks_per_worker;
  config.max_worker_rss_bytes = options.max_worker_rss_bytes;
  return config;
}

}  // namespace

std::optional<ExceptionInfo> GetExceptionInfo(const absl::Status& status) {
  return internal::InfoFromStatus(status);
}

ProcessPoolExecutor::ProcessPoolExecutor(ExecutorOptions options)
    : core_(std::make_unique<internal::ExecutorCore>(ToPoolConfig(options))),
      uncaught_(std::uncaught_exceptions()) {}

ProcessPoolExecutor::~ProcessPoolExecutor() noexcept(false) {
  core_->Shutdown(false, false,
                  /*quiet=*/std::uncaught_exceptions() > uncaught_);
}

void ProcessPoolExecutor::Shutdown(ShutdownMode mode) {
  core_->Shutdown(mode != ShutdownMode::kWait,
                  mode == ShutdownMode::kKillRunning, /*quiet=*/false);
}

}  // namespace parallel
