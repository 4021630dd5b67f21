// parallel/run_parallel_steps.h — chromite's RunParallelSteps, in C++.
//
// Runs each step in its own forked child process, captures the child's stdout
// and stderr to its own unlinked temp file, replays that output in step order
// as if the steps had run one after another (the earliest unfinished step is
// streamed live), and raises every failure together as one BackgroundFailure
// once all output has been replayed:
//
//   parallel::RunParallelSteps({
//       [] { CompileFoo(); },
//       [] { CompileBar(); },
//   });
//
//   parallel::ParallelOptions options;
//   options.return_values = true;
//   std::vector<int> sizes = parallel::RunParallelSteps<int>(
//       {[] { return 1; }, [] { return 2; }}, options);  // {1, 2}
//
// Steps may return void, a value T (encodable with parallel::Codec<T>),
// absl::Status or absl::StatusOr<T>; a non-OK status fails the step with type
// "absl::Status". Name the return type explicitly for anything but void:
// `RunParallelSteps<absl::Status>(...)` — a Status-returning lambda passed to
// the void overload would have its status ignored.
//
// Failures (see parallel/failure.h): a thrown exception has its demangled type
// and what(); exit(n) or death by a signal is parallel::ProcessUnexpectedExit
// ("exited unexpectedly with code N", "was killed by signal 11 (SIGSEGV)"),
// with the crashing thread's symbolized stack for SIGSEGV, SIGBUS, SIGFPE,
// SIGILL and SIGABRT; timeouts are parallel::ProcessTimeout and
// parallel::ProcessSilentTimeout, with the hung thread's stack. Every message
// ends with the step and its pid, e.g. "boom [step 2 (pid 4242)]".
//
// THE FORK CONTRACT — what a step may rely on in its child:
//  - It runs in a fork() of the caller: a copy of the caller's memory taken
//    when the step started, with only the calling thread. Changes it makes to
//    memory are lost with the child; return a value to send something back.
//  - malloc and stdio work even if the caller has other threads (glibc makes
//    them fork-safe). Anything else another thread may have held locked at
//    fork time — a mutex of your own, a logging library's lock, a thread pool,
//    a gRPC channel — must not be used by the step: it may deadlock or be gone.
//  - stdin is /dev/null; stdout and stderr are the capture file; every signal
//    has its default disposition and none is blocked; the child is the leader
//    of its own process group (its children are killed with it) and dies with
//    the parent (PR_SET_PDEATHSIG).
//  - The child ends with _exit() after flushing stdio and std::cout/cerr
//    (output that cannot be written fails the step: parallel::OutputLost):
//    atexit handlers and static destructors never run in it.
//  - The caller's open descriptors are inherited as they are, except the
//    library's own (other steps' capture files, pidfds) and output_fd /
//    error_fd when above 2, which the child closes.
//  - A step may itself call RunParallelSteps; its output nests in order.
//  - Processes a step leaves running in its process group are killed when the
//    step ends: nothing outlives the call.
//
// Thread-safety: may be called from several threads at once. While a call
// runs, SIGINT, SIGTERM, SIGHUP and SIGQUIT are caught: the steps are killed,
// output so far is replayed, the caller's dispositions restored and the
// signal re-raised.

#ifndef PARALLEL_RUN_PARALLEL_STEPS_H_
#define PARALLEL_RUN_PARALLEL_STEPS_H_

#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallel/codec.h"
#include "parallel/failure.h"
#include "parallel/options.h"
#include "parallel/run_steps.h"

namespace parallel {

// Runs every step in its own child process and blocks until all are done (or
// halted). Throws std::invalid_argument for invalid options (nothing runs),
// std::runtime_error if the temp dir is unusable (nothing runs), and
// BackgroundFailure after replaying all output if any step failed.
void RunParallelSteps(std::vector<std::function<void()>> steps,
                      const ParallelOptions& options = {});

namespace internal {

template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

// Runs the steps and turns the report into the throwing API's behaviour.
RunReport RunOrThrow(std::vector<Step> steps, const ParallelOptions& options);

// Re-raises an interrupt the run saw, then throws BackgroundFailure listing
// every failure, if any.
void ThrowIfFailed(const RunReport& report);

// std::invalid_argument for InvalidArgument, else std::runtime_error.
[[noreturn]] void ThrowStatus(const absl::Status& status);

// What a step or task returned, as a result body: the encoded value (or ""
// when !keep_value), or the failing status of an absl::Status / StatusOr.
template <typename T>
absl::StatusOr<std::string> EncodeResult(T value, bool keep_value) {
  if constexpr (std::is_same_v<T, absl::Status>) {
    if (!value.ok()) return value;
  } else if constexpr (IsStatusOr<T>::value) {
    if (!value.ok()) return value.status();
  }
  return keep_value ? Encode(value) : std::string();
}

// Adapts a step returning T to a Step body that encodes its value.
template <typename T>
std::function<absl::StatusOr<std::string>()> MakeBody(std::function<T()> step,
                                                      bool keep_value) {
  return [step = std::move(step), keep_value]() -> absl::StatusOr<std::string> {
    return EncodeResult<T>(step(), keep_value);
  };
}

}  // namespace internal

// Returns the steps' values in step order when options.return_values, else an
// empty vector. Throws as the void overload does, and BackgroundFailure if a
// value cannot be decoded.
template <typename T>
std::vector<T> RunParallelSteps(std::vector<std::function<T()>> steps,
                                const ParallelOptions& options = {}) {
  std::vector<Step> wrapped;
  wrapped.reserve(steps.size());
  for (auto& step : steps) {
    wrapped.push_back(Step::Function(
        internal::MakeBody<T>(std::move(step), options.return_values)));
  }
  // The moved-from functions would only add to what every fork copies.
  std::vector<std::function<T()>>().swap(steps);
  RunReport report = internal::RunOrThrow(std::move(wrapped), options);
  std::vector<T> values;
  if (!options.return_values) return values;
  values.reserve(report.steps.size());
  std::vector<ExceptionInfo> corrupt;
  for (const StepReport& step : report.steps) {
    T value{};
    if (absl::Status status = DecodeInto(step.value, &value); status.ok()) {
      values.push_back(std::move(value));
    } else {
      corrupt.push_back({std::string(kCorruptResult),
                         std::string(status.message()), "", step.name});
    }
  }
  if (!corrupt.empty()) throw BackgroundFailure(std::move(corrupt));
  return values;
}

}  // namespace parallel

#endif  // PARALLEL_RUN_PARALLEL_STEPS_H_
