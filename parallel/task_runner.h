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
// Both are thin layers over the executor's core (executor.h,
// internal/executor_state.h): one pool in the library. So a runner has a
// thread of its own that runs the event loop — it forks the workers (and
// their replacements, whose view of the caller's memory is therefore as of
// a moment the caller does not choose: see above), replays output, and
// calls StepObserver::OnNote. Put() queues an input for that thread and
// returns; it blocks only while kRunnerQueuePerWorker inputs per worker are
// already waiting or running, so memory stays bounded however many inputs
// are put. Under the in-process fake (testing/in_process_steps.h) there is
// no thread: each input runs inside its Put(), on the caller's thread.
//
// Thread-safety: a runner is used from the thread that created it; Put()
// from another thread throws std::logic_error (Put() order is output
// order, which two threads would make a race). For submitting from several
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
#include "parallel/internal/executor_state.h"
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

// BackgroundTaskRunner::Put() blocks while this many inputs per worker wait
// or run (then until half as many do): deep enough that the runner's thread
// never starves a worker and a blocked caller is woken rarely (measured:
// 16 × kLanes cut context switches by a third against 2 × kLanes), small
// enough for memory (an input's encoded arguments and label).
inline constexpr size_t kRunnerQueuePerWorker = 16 * kLanes;

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

// The executor core a task runner is a layer over. Interrupts are re-raised
// by the runner (ThrowIfFailed), on its caller's thread.
inline std::unique_ptr<ExecutorCore> StartRunnerCore(
    TaskBody body, int processes, bool halt_on_error, bool keep_values,
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
  // Every input's report is kept: Wait() needs the failures, and
  // RunTasksInProcessPool the values.
  config.forget_ended = false;
  return std::make_unique<ExecutorCore>(std::move(config), std::move(body),
                                        /*reraise_interrupt=*/false);
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
    const int processes =
        options.processes == 0 ? internal::NumberOfCpus() : options.processes;
    core_ = internal::StartRunnerCore(
        internal::MakeTaskBody<std::function<void(Args...)>, Args...>(
            std::move(task)),
        processes, options.halt_on_error, /*keep_values=*/false, pool);
    room_ = internal::kRunnerQueuePerWorker * static_cast<size_t>(processes);
  }

  BackgroundTaskRunner(const BackgroundTaskRunner&) = delete;
  BackgroundTaskRunner& operator=(const BackgroundTaskRunner&) = delete;

  // Queues the arguments for a worker (see the header comment for when it
  // blocks). After a failure with halt_on_error the input is recorded as
  // not run; after an interrupt it is dropped (the signal is re-raised by
  // Wait()). If no worker can be started (out of processes) the input fails
  // with parallel::ProcessStartError. Throws std::logic_error after Wait().
  void Put(Args... args) {
    if (waited_) throw std::logic_error("parallel: Put() after Wait()");
    if (std::this_thread::get_id() != owner_) {
      throw std::logic_error(
          "parallel: BackgroundTaskRunner::Put() from a thread other than the "
          "one that created the runner (use ProcessPoolExecutor to submit "
          "from several threads)");
    }
    internal::PoolInput input;
    input.args = Encode(std::tuple<std::decay_t<Args>...>(args...));
    input.label = internal::InputLabel(inputs_++, args...);
    core_->WaitForRoom(room_);
    std::vector<internal::PoolInput> one;
    one.push_back(std::move(input));
    core_->Feed(std::move(one));
  }

  // Idempotent: only the first call waits and may throw.
  void Wait() {
    if (waited_) return;
    waited_ = true;
    core_->Shutdown(false, false, /*quiet=*/true);
    internal::ThrowIfFailed(core_->report());
  }

  ~BackgroundTaskRunner() noexcept(false) {
    if (std::uncaught_exceptions() > uncaught_) {
      if (!waited_) {
        waited_ = true;
        // Replays either way; the foreground exception wins.
        if (halt_on_error_) {
          core_->Halt();
        } else {
          core_->Shutdown(false, false, /*quiet=*/true);
        }
      }
      return;
    }
    Wait();
  }

 private:
  std::unique_ptr<internal::ExecutorCore> core_;
  size_t room_ = 0;
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
    std::unique_ptr<internal::ExecutorCore> core = internal::StartRunnerCore(
        internal::MakeTaskBody<F, Args...>(std::move(task)), processes,
        options.halt_on_error, /*keep_values=*/!kVoid, options);
    // All handed to the core's thread at once (one lock, one wake-up).
    std::vector<internal::PoolInput> pool_inputs(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      std::apply(
          [&](const auto&... args) {
            pool_inputs[i].args = Encode(inputs[i]);
            pool_inputs[i].label = internal::InputLabel(i, args...);
          },
          inputs[i]);
    }
    core->Feed(std::move(pool_inputs));
    core->Shutdown(false, false, /*quiet=*/true);
    const RunReport& report = core->report();
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
