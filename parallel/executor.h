// parallel/executor.h — Python's ProcessPoolExecutor and multiprocessing.Pool:
// futures over worker processes, with output captured and replayed.
//
//   parallel::ProcessPoolExecutor executor({.max_workers = 4});
//   parallel::Future<int> size = executor.Submit(FileSize, "a.txt");
//   std::vector<absl::StatusOr<int>> sizes =
//       executor.Map(FileSize, std::vector<std::string>{"a", "b"});
//   absl::StatusOr<int> got = size.Get();     // blocks
//   if (!got.ok()) std::cerr << parallel::GetExceptionInfo(got.status())
//                                   ->ToString();
//   executor.Shutdown();                      // or at scope end
//
// How a task runs, and what it costs (the physical floor is a socket round
// trip to a pre-forked worker, see tools/bench/executor_vs_python.sh):
//  - A function pointer, or a lambda that captures nothing (and is not
//    generic), runs in an already-started worker: its address is valid there,
//    since workers are forks of the caller. Arguments and result travel
//    through parallel::Codec; a type without one is a compile-time error.
//  - Any other callable (a lambda with captures, a functor, a generic
//    lambda) gets a process forked for it alone, with its state as at
//    Submit(): the callable and its arguments are copied at Submit() and the
//    fork happens when the task's turn comes (captured pointers and
//    references see memory as it is at that fork). This costs a fork per
//    task (milliseconds where workers cost tens of microseconds).
// Workers are forked by the executor's thread when it starts, and again to
// replace one; the fork contract of run_parallel_steps.h applies (a worker
// sees the caller's memory as it was then; a lock another thread held then
// stays held in the worker).
// Each worker is sent up to internal::kLanes (8) tasks at once, so it never
// waits for the executor's thread between tasks; a worker that runs out
// takes the newest task another holds but has not started (withdrawn there,
// exactly), so no task waits behind a long one while a worker idles. Map()
// hands all its tasks over at once and wakes its caller once. A lone
// Submit() while the executor's thread waits for an event (the usual case
// for Submit-then-Get one at a time) sends the task to an idle worker from
// the submitting thread itself: a round trip is then submitter → worker →
// executor's thread → submitter, not through the executor's thread first
// (otherwise, and always for a task that needs a process of its own, the
// task is queued for that thread).
//
// Failure semantics (each a complaint about Python's pools):
//  - A worker that crashes, exits, is killed (OOM) or times out fails only
//    the task it ran — parallel::ProcessUnexpectedExit / ProcessTimeout with
//    exit code or signal, pid, and the stack for crashes and timeouts — and
//    is replaced. The executor never breaks.
//  - Cancel(kIfPending) succeeds for a task no worker has started (one
//    waiting in a worker's socket is withdrawn there, exactly), and then it
//    never starts;
//    Cancel(kKillIfRunning) also kills a running task's process group and
//    replaces its worker. A cancelled future is done, not failed.
//  - A per-task timeout (TaskOptions::timeout, or task_timeout) kills the
//    task after dumping its stack into its output; silent_timeout likewise
//    after that long without output.
//  - A callback that throws is collected and raised by Shutdown() as a
//    BackgroundFailure, with the others; it never hangs the executor.
//  - An initializer that throws fails the task its worker took (with the
//    initializer's exception); after internal::kMaxInitializerFailures such
//    failures every pending and later task fails with it: no respawn loop.
//    (An initializer that crashes fails that task as a crash would.)
//  - SIGINT, SIGTERM, SIGHUP or SIGQUIT kill every worker group at once,
//    end every future (kAborted) and are re-raised as everywhere in the
//    library: one Ctrl-C ends the program.
//
// Get() of a failed task returns a non-OK status: kDeadlineExceeded for a
// timeout, kUnavailable when no process could be started, kCancelled when
// cancelled, kAborted when interrupted, kFailedPrecondition when submitted
// after Shutdown(), kUnknown for any other failure (exception, non-OK
// status, crash, exit); GetExceptionInfo(status) gives its type, message,
// traceback, task name and pid.
//
// Output: each task's stdout and stderr are captured and replayed as one
// block each, in Submit() order, the earliest unfinished task's streamed
// live — as RunTasksInProcessPool; or, with ReplayOrder::kCompletion, in the
// order the tasks end, each whole when it ends (none live). A future is done when its task ends, even
// while its output still waits behind an earlier task's.
//
// Threads: the executor has one thread of its own that runs the event loop
// (supervisor.h). Submit(), Cancel(), Get(), WaitFor() and OnDone() may be
// called from any thread. Callbacks run on the thread that completes the
// future — the executor's thread for a task's end, the cancelling thread for
// a cancel — or at once on the registering thread when already done; they
// should not block for long (the executor's thread waits for them, and a
// SIGINT or SIGTERM that arrives meanwhile is acted on once they return).
// Under the in-process fake (testing/in_process_steps.h) there is no such
// thread: each task runs inside its Submit() (or Map()), on the calling
// thread, and its future is done when Submit() returns.
//
// Thread-safety: thread-safe, except that Shutdown() and the destructor must
// not race each other.

#ifndef PARALLEL_EXECUTOR_H_
#define PARALLEL_EXECUTOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/codec.h"
#include "parallel/failure.h"
#include "parallel/internal/executor_state.h"
#include "parallel/internal/labels.h"
#include "parallel/internal/worker_pool.h"
#include "parallel/run_parallel_steps.h"

namespace parallel {

enum class CancelMode { kIfPending, kKillIfRunning };
// Wait for every task / drop the pending ones (cancelled) / also kill the
// running ones (cancelled).
enum class ShutdownMode { kWait, kCancelPending, kKillRunning };

// The order in which tasks' output is replayed.
enum class ReplayOrder {
  kSubmit,      // Submit() order, the earliest unfinished task live
  kCompletion,  // each task's output when it ends, whole
};

struct ExecutorOptions {
  // 0 = CPUs this process may use; < 0 → std::invalid_argument.
  int max_workers = 0;
  // Once in each worker before its first task (see the header comment).
  std::function<void()> initializer;
  // 0 = no limit; else the worker is replaced after that many tasks.
  int max_tasks_per_worker = 0;
  // 0 = no limit; else a worker whose resident set (/proc) is over it after
  // a task is replaced.
  int64_t max_worker_rss_bytes = 0;
  absl::Duration task_timeout = absl::InfiniteDuration();  // from its start
  absl::Duration silent_timeout = absl::InfiniteDuration();
  // As ParallelOptions.
  int output_fd = 1;
  bool combine_stderr = true;
  int error_fd = 2;
  std::string temp_dir;
  ReplayOrder replay_order = ReplayOrder::kSubmit;
  // As ProcessOptions::trace_file: a Chrome trace-event JSON file of every
  // task, written when the executor shuts down (trace.h).
  std::string trace_file;
};

struct TaskOptions {
  // In failures. Default "task N (args)", N the number of Submit() calls
  // before it (two threads submitting at once may both see the same N).
  std::string name;
  absl::Duration timeout = absl::InfiniteDuration();  // tighter than task_timeout
};

// The failure a non-OK status from Future::Get() carries, if any.
std::optional<ExceptionInfo> GetExceptionInfo(const absl::Status& status);

namespace internal {

// What f(args...) returns, and what a Future of it holds: Status → void,
// StatusOr<U> → U.
template <typename R>
struct FutureValue {
  using type = R;
};
template <>
struct FutureValue<absl::Status> {
  using type = void;
};
template <typename U>
struct FutureValue<absl::StatusOr<U>> {
  using type = U;
};

// The declared signature of a function pointer or a non-generic lambda.
template <typename F, typename = void>
struct Signature {
  static constexpr bool kKnown = false;
};
template <typename R, typename... P>
struct Signature<R (*)(P...)> {
  static constexpr bool kKnown = true;
  using Pointer = R (*)(P...);
  using Params = std::tuple<std::decay_t<P>...>;
};
template <typename R, typename... P>
struct Signature<R(P...)> : Signature<R (*)(P...)> {};
template <typename M>
struct MemberSignature {
  static constexpr bool kKnown = false;
};
template <typename C, typename R, typename... P>
struct MemberSignature<R (C::*)(P...) const> : Signature<R (*)(P...)> {};
template <typename C, typename R, typename... P>
struct MemberSignature<R (C::*)(P...)> : Signature<R (*)(P...)> {};
template <typename F>
struct Signature<F, std::void_t<decltype(&F::operator())>>
    : MemberSignature<decltype(&F::operator())> {};

template <typename T>
struct IsTuple : std::false_type {};
template <typename... Ts>
struct IsTuple<std::tuple<Ts...>> : std::true_type {};

// What Map's f returns for an input: f(input), or f(elements...) for a
// std::tuple input that f does not take whole.
template <typename F, typename Input, typename = void>
struct MapCall {
  using Result = std::invoke_result_t<F&, Input&>;
};
template <typename F, typename... Ts>
struct MapCall<F, std::tuple<Ts...>,
               std::enable_if_t<!std::is_invocable_v<F&, std::tuple<Ts...>&>>> {
  using Result = std::invoke_result_t<F&, Ts&...>;
};

// A function pointer, or a captureless non-generic lambda (which converts
// to one): runs in a pre-forked worker.
template <typename F>
constexpr bool RunsInWorker() {
  using D = std::decay_t<F>;
  if constexpr (std::is_pointer_v<D> &&
                std::is_function_v<std::remove_pointer_t<D>>) {
    return true;
  } else if constexpr (std::is_class_v<D> && Signature<D>::kKnown) {
    return std::is_convertible_v<D, typename Signature<D>::Pointer>;
  } else {
    return false;
  }
}

// In a worker: the function pointer and the arguments, decoded; the
// result, encoded.
template <typename Pointer, typename Args>
absl::StatusOr<std::string> PointerEntry(absl::string_view bytes) {
  std::tuple<uint64_t, Args> call;
  if (absl::Status status = DecodeInto(bytes, &call); !status.ok()) {
    return status;
  }
  const Pointer f = reinterpret_cast<Pointer>(std::get<0>(call));
  using R = decltype(std::apply(f, std::get<1>(call)));
  if constexpr (std::is_void_v<R>) {
    std::apply(f, std::get<1>(call));
    return std::string();
  } else {
    return EncodeResult<R>(std::apply(f, std::get<1>(call)), true);
  }
}

// Decodes what a task of return type R produced.
template <typename R>
auto DecodeTaskValue(const absl::StatusOr<std::string>& raw) {
  using T = typename FutureValue<R>::type;
  if constexpr (std::is_void_v<T>) {
    return raw.status();
  } else {
    if (!raw.ok()) return absl::StatusOr<T>(raw.status());
    R value{};
    if (absl::Status status = DecodeInto(*raw, &value); !status.ok()) {
      return absl::StatusOr<T>(CorruptValue(status));
    }
    if constexpr (std::is_same_v<R, T>) {
      return absl::StatusOr<T>(std::move(value));
    } else {
      return absl::StatusOr<T>(*std::move(value));
    }
  }
}

}  // namespace internal

template <typename T>
class Future {
 public:
  using Result = std::conditional_t<std::is_void_v<T>, absl::Status,
                                    absl::StatusOr<T>>;

  Future() = default;  // not valid(): every other call is an error
  Future(Future&&) = default;
  Future& operator=(Future&&) = default;
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;

  bool valid() const { return state_ != nullptr; }
  // A value, a failure, or cancelled.
  bool done() const { return state_->done(); }
  bool cancelled() const { return state_->cancelled(); }
  // True if it will never deliver a value (it is cancelled now, or was).
  bool Cancel(CancelMode mode = CancelMode::kIfPending) {
    return state_->Cancel(mode == CancelMode::kKillIfRunning);
  }
  // True once done; never affects the task.
  bool WaitFor(absl::Duration timeout) const {
    return state_->WaitFor(timeout);
  }
  // Blocks until done. May be called more than once.
  Result Get() { return decode_(state_->Wait()); }
  // In the parent, in registration order (see the header comment for the
  // thread); at once if already done. A callback that throws is raised by
  // the executor's Shutdown().
  void OnDone(std::function<void(const Result&)> callback) {
    state_->AddCallback(
        [callback = std::move(callback), decode = decode_](
            const absl::StatusOr<std::string>& raw) { callback(decode(raw)); });
  }

 private:
  friend class ProcessPoolExecutor;
  template <typename U>
  friend auto AsCompleted(std::vector<Future<U>>& futures);
  Future(std::shared_ptr<internal::TaskState> state,
         Result (*decode)(const absl::StatusOr<std::string>&))
      : state_(std::move(state)), decode_(decode) {}

  std::shared_ptr<internal::TaskState> state_;
  Result (*decode_)(const absl::StatusOr<std::string>&) = nullptr;
};

// Indices of `futures` in the order they complete — those already done
// first, in index order — as a range whose iteration blocks until the next
// one is done. The futures must outlive the iteration.
template <typename T>
auto AsCompleted(std::vector<Future<T>>& futures) {
  std::vector<internal::TaskState*> states;
  states.reserve(futures.size());
  for (Future<T>& future : futures) states.push_back(future.state_.get());
  return internal::CompletionRange(states);
}

class ProcessPoolExecutor {
 public:
  // Starts the workers. Throws std::invalid_argument for bad options,
  // std::runtime_error if no worker can be started.
  explicit ProcessPoolExecutor(ExecutorOptions options = {});
  ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
  ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;
  // Shutdown(kWait); throws as Shutdown() does unless an exception is
  // already propagating.
  ~ProcessPoolExecutor() noexcept(false);

  // f(args...) in a worker. After Shutdown(): a future failed with
  // kFailedPrecondition.
  template <typename F, typename... Args>
  auto Submit(F f, Args... args) {
    return Submit(TaskOptions{}, std::move(f), std::move(args)...);
  }
  template <typename F, typename... Args>
  auto Submit(const TaskOptions& task, F f, Args... args);

  // f(input) for every input — or f(elements...) for a std::tuple input
  // that f does not take whole (starmap) —; results in input order
  // (absl::Status per input for void f).
  template <typename F, typename Input>
  auto Map(F f, std::vector<Input> inputs);

  // Idempotent; only the first call may throw: a BackgroundFailure listing
  // every callback that threw.
  void Shutdown(ShutdownMode mode = ShutdownMode::kWait);

 private:
  // The task f(args...) as the pool takes it; `index` names it by default.
  template <typename F, typename... Args>
  static internal::PoolInput MakeInput(const TaskOptions& task, size_t index,
                                       F f, Args... args);

  std::unique_ptr<internal::ExecutorCore> core_;
  const int uncaught_;
};

template <typename F, typename... Args>
auto ProcessPoolExecutor::Submit(const TaskOptions& task, F f, Args... args) {
  using R = std::invoke_result_t<F&, Args&...>;
  using T = typename internal::FutureValue<R>::type;
  static_assert(std::is_void_v<T> || std::is_default_constructible_v<T>,
                "a task's result must be default-constructible");
  return Future<T>(core_->Submit(MakeInput(task, core_->next_index(),
                                           std::move(f), std::move(args)...)),
                   &internal::DecodeTaskValue<R>);
}

template <typename F, typename... Args>
internal::PoolInput ProcessPoolExecutor::MakeInput(const TaskOptions& task,
                                                   size_t index, F f,
                                                   Args... args) {
  using R = std::invoke_result_t<F&, Args&...>;
  internal::PoolInput input;
  input.label = task.name.empty() ? internal::ArgsLabel("task", index, args...)
                                  : task.name;
  input.timeout = task.timeout;
  if constexpr (internal::RunsInWorker<F>()) {
    using Sig = internal::Signature<std::decay_t<F>>;
    using Pointer = typename Sig::Pointer;
    const Pointer pointer = f;
    typename Sig::Params converted(std::move(args)...);
    input.entry = reinterpret_cast<uint64_t>(
        &internal::PointerEntry<Pointer, typename Sig::Params>);
    input.args = Encode(std::make_tuple(reinterpret_cast<uint64_t>(pointer),
                                        std::move(converted)));
  } else {
    input.own_body = [f = std::move(f),
                      call = std::make_tuple(std::move(args)...)](
                         absl::string_view) mutable
        -> absl::StatusOr<std::string> {
      if constexpr (std::is_void_v<R>) {
        std::apply(f, call);
        return std::string();
      } else {
        return internal::EncodeResult<R>(std::apply(f, call), true);
      }
    };
  }
  return input;
}

template <typename F, typename Input>
auto ProcessPoolExecutor::Map(F f, std::vector<Input> inputs) {
  // Every task goes to the executor's thread at once (one lock, one
  // wake-up), then the results are taken in order.
  const size_t first = core_->next_index();
  auto make = [&](Input& input, size_t index) {
    if constexpr (internal::IsTuple<Input>::value &&
                  !std::is_invocable_v<F&, Input&>) {
      return std::apply(
          [&](auto&... args) {
            return MakeInput(TaskOptions{}, index, f, std::move(args)...);
          },
          input);
    } else {
      return MakeInput(TaskOptions{}, index, f, std::move(input));
    }
  };
  using R = typename internal::MapCall<F, Input>::Result;
  using Fut = Future<typename internal::FutureValue<R>::type>;
  std::vector<internal::PoolInput> pool_inputs;
  pool_inputs.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    pool_inputs.push_back(make(inputs[i], first + i));
  }
  internal::Latch all_done(pool_inputs.size());
  std::vector<std::shared_ptr<internal::TaskState>> states =
      core_->SubmitAll(std::move(pool_inputs), &all_done);
  all_done.Wait();
  std::vector<typename Fut::Result> results;
  results.reserve(states.size());
  for (std::shared_ptr<internal::TaskState>& state : states) {
    Fut future(std::move(state), &internal::DecodeTaskValue<R>);
    results.push_back(future.Get());
  }
  return results;
}

}  // namespace parallel

#endif  // PARALLEL_EXECUTOR_H_
