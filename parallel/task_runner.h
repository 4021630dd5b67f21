// parallel/task_runner.h — chromite's BackgroundTaskRunner and
// RunTasksInProcessPool: pre-forked worker processes fed with inputs.
//
//   {
//     parallel::BackgroundTaskRunner<std::string, int> runner(
//         [](std::string board, int jobs) { BuildBoard(board, jobs); });
//     for (const std::string& board : boards) runner.Put(board, 8);
//   }  // waits, replays output in Put() order, throws BackgroundFailure
//
//   std::vector<int> sizes = parallel::RunTasksInProcessPool(
//       [](std::string path) { return FileSize(path); },
//       std::vector<std::tuple<std::string>>{{"a"}, {"b"}});
//
// The workers are forked when the runner is constructed, so a task sees the
// caller's memory as it was then (the fork contract of run_parallel_steps.h
// applies) — except in a worker forked later to replace one that died or
// timed out: that one sees the caller's memory as it is when it is forked.
// A task should depend only on its arguments and on what the caller set up
// before constructing the runner and no longer changes. Arguments and results travel through parallel::Codec; an
// argument type without a Codec is a compile-time error naming it.
//
// Output is captured per input — not per worker, as chromite does — and
// replayed in Put() order, the earliest unfinished input streamed live. A
// worker that crashes, exits or is killed fails only the input it was running
// (parallel::ProcessUnexpectedExit, signal named) and is replaced; the other
// inputs go on. Nothing hangs where Python's Pool.map would.
//
// Thread-safety: a runner is used from the thread that created it; Put()
// from another thread throws std::logic_error (it would race the event
// loop, which runs inside Put() and Wait()). For submitting from several
// threads use ProcessPoolExecutor (executor.h).

#ifndef PARALLEL_TASK_RUNNER_H_
#define PARALLEL_TASK_RUNNER_H_

#include <unistd.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallel/codec.h"
#include "parallel/failure.h"
#include "parallel/internal/capture.h"
#include "parallel/internal/labels.h"
#include "parallel/internal/worker_pool.h"
#include "parallel/run_parallel_steps.h"

namespace parallel {

struct PoolOptions : ProcessOptions {
  // Worker processes; 0 = min(number of CPUs, number of inputs).
  int processes = 0;
  // Runs once in each worker after its last input; its output is replayed
  // after all inputs' output, and a failure of it (exception, status, crash,
  // exit) is reported like an input's.
  std::function<void()> onexit;
  // The first failure kills the workers and runs nothing more.
  bool halt_on_error = false;
  // Prefix every replayed line with "<input name>\t" (GNU parallel's --tag).
  bool tag_lines = false;
  // timeout and silent_timeout (ProcessOptions) are per input: the worker is
  // killed (after its stack is dumped into the input's output) and replaced.
};

namespace internal {

inline int NumberOfCpus() {
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 0 ? static_cast<int>(cpus) : 1;
}

// "input 3" or "input 3 (\"arm64\", 8)" when the arguments print shortly.
template <typename... Args>
std::string InputLabel(size_t index, const Args&... args) {
  return ArgsLabel("input", index, args...);
}

template <typename F, typename... Args>
TaskBody MakeTaskBody(F task) {
  using Result = std::invoke_result_t<F&, Args&...>;
  return [task = std::move(task)](
             absl::string_view bytes) mutable -> absl::StatusOr<std::string> {
    std::tuple<std::decay_t<Args>...> args;
    if (absl::Status status = DecodeInto(bytes, &args); !status.ok()) {
      return status;
    }
    if constexpr (std::is_void_v<Result>) {
      std::apply(task, args);
      return std::string();
    } else {
      return EncodeResult<Result>(std::apply(task, args), /*keep_value=*/true);
    }
  };
}

inline std::unique_ptr<WorkerPool> StartPool(TaskBody body, int processes,
                                             bool halt_on_error,
                                             bool keep_values,
                                             const PoolOptions& options) {
  if (processes < 0) {
    throw std::invalid_argument(absl::StrCat(
        "parallel: processes must be >= 0 (0 = number of CPUs), got ",
        processes));
  }
  PoolConfig config;
  static_cast<ProcessOptions&>(config) = options;
  config.temp_dir = ResolveTempDir(options.temp_dir);
  config.processes = processes;
  config.halt_on_error = halt_on_error;
  config.keep_values = keep_values;
  config.onexit = options.onexit;
  config.tag_lines = options.tag_lines;
  absl::StatusOr<std::unique_ptr<WorkerPool>> pool =
      WorkerPool::Start(std::move(body), std::move(config));
  if (!pool.ok()) ThrowStatus(pool.status());
  return *std::move(pool);
}

}  // namespace internal

// Context guard: the constructor starts the workers; each Put() runs
// task(args...) in some worker. Leaving scope (or Wait()) blocks until every
// input ran, replays output in Put() order, and throws BackgroundFailure if
// anything failed — unless an exception is already propagating, in which case
// that exception wins (chromite's foreground priority): with halt_on_error
// the workers are killed at once, otherwise they finish and their output is
// still replayed.
template <typename... Args>
class BackgroundTaskRunner {
 public:
  struct Options : ProcessOptions {
    int processes = 0;  // 0 = number of CPUs
    bool halt_on_error = false;
    // Runs once in each worker after its last input.
    std::function<void()> onexit;
    // Prefix every replayed line with "<input name>\t".
    bool tag_lines = false;
  };

  // Throws std::invalid_argument for bad options, std::runtime_error if the
  // workers cannot be started.
  explicit BackgroundTaskRunner(std::function<void(Args...)> task,
                                Options options = {})
      : uncaught_(std::uncaught_exceptions()),
        halt_on_error_(options.halt_on_error) {
    PoolOptions pool;
    static_cast<ProcessOptions&>(pool) = options;
    pool.onexit = std::move(options.onexit);
    pool.tag_lines = options.tag_lines;
    pool_ = internal::StartPool(
        internal::MakeTaskBody<std::function<void(Args...)>, Args...>(
            std::move(task)),
        options.processes == 0 ? internal::NumberOfCpus() : options.processes,
        options.halt_on_error, /*keep_values=*/false, pool);
  }

  BackgroundTaskRunner(const BackgroundTaskRunner&) = delete;
  BackgroundTaskRunner& operator=(const BackgroundTaskRunner&) = delete;

  // Hands the arguments to a free worker, blocking while all are busy (a
  // full kernel socket is the only buffer). After a failure with
  // halt_on_error, or an interrupt, the input is recorded as not run. If no
  // worker can be started (out of processes) the input fails with
  // parallel::ProcessStartError. Throws std::logic_error after Wait().
  void Put(Args... args) {
    if (waited_) throw std::logic_error("parallel: Put() after Wait()");
    if (std::this_thread::get_id() != owner_) {
      throw std::logic_error(
          "parallel: BackgroundTaskRunner::Put() from a thread other than the "
          "one that created the runner (use ProcessPoolExecutor to submit "
          "from several threads)");
    }
    std::tuple<std::decay_t<Args>...> encoded(args...);
    pool_->Put(Encode(encoded), internal::InputLabel(inputs_++, args...));
  }

  // Idempotent: only the first call waits and may throw.
  void Wait() {
    if (waited_) return;
    waited_ = true;
    internal::ThrowIfFailed(pool_->Finish());
  }

  ~BackgroundTaskRunner() noexcept(false) {
    if (std::uncaught_exceptions() > uncaught_) {
      if (!waited_) {
        waited_ = true;
        if (halt_on_error_) pool_->Kill();
        pool_->Finish();  // replays; the foreground exception wins
      }
      return;
    }
    Wait();
  }

 private:
  std::unique_ptr<internal::WorkerPool> pool_;
  const int uncaught_;
  const bool halt_on_error_;
  const std::thread::id owner_ = std::this_thread::get_id();
  bool waited_ = false;
  size_t inputs_ = 0;
};

// Runs task(inputs[i]...) in a pool of worker processes and returns the
// results in input order (void tasks return void). Empty inputs start no
// process. Throws BackgroundFailure listing every failed input after all
// output has been replayed.
template <typename F, typename... Args>
auto RunTasksInProcessPool(F task, std::vector<std::tuple<Args...>> inputs,
                           PoolOptions options = {}) {
  using Result = std::invoke_result_t<F&, Args&...>;
  constexpr bool kVoid = std::is_void_v<Result>;
  std::vector<std::conditional_t<kVoid, int, Result>> results;
  if (!inputs.empty()) {
    const int processes = options.processes != 0
                              ? options.processes
                              : std::min<int>(internal::NumberOfCpus(),
                                              static_cast<int>(inputs.size()));
    std::unique_ptr<internal::WorkerPool> pool = internal::StartPool(
        internal::MakeTaskBody<F, Args...>(std::move(task)), processes,
        options.halt_on_error, /*keep_values=*/!kVoid, options);
    // All queued at once: Finish() sends them to the workers in batches.
    for (size_t i = 0; i < inputs.size(); ++i) {
      std::apply(
          [&](const auto&... args) {
            internal::PoolInput input;
            input.args = Encode(inputs[i]);
            input.label = internal::InputLabel(i, args...);
            pool->Submit(std::move(input));
          },
          inputs[i]);
    }
    const RunReport& report = pool->Finish();
    internal::ThrowIfFailed(report);
    if constexpr (!kVoid) {
      results.reserve(inputs.size());
      std::vector<ExceptionInfo> corrupt;
      for (size_t i = 0; i < inputs.size(); ++i) {
        Result value{};
        if (absl::Status status = DecodeInto(report.steps[i].value, &value);
            status.ok()) {
          results.push_back(std::move(value));
        } else {
          corrupt.push_back({std::string(kCorruptResult),
                             std::string(status.message()), "",
                             report.steps[i].name});
        }
      }
      if (!corrupt.empty()) throw BackgroundFailure(std::move(corrupt));
    }
  }
  if constexpr (!kVoid) return results;
}

}  // namespace parallel

#endif  // PARALLEL_TASK_RUNNER_H_
