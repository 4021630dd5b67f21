#include "parallel/internal/engine.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/codec.h"
#include "parallel/internal/capture.h"
#include "parallel/internal/child.h"
#include "parallel/internal/dont_fork_allocator.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/in_process.h"
#include "parallel/internal/interrupt.h"
#include "parallel/internal/record.h"
#include "parallel/internal/stack.h"

namespace parallel {
namespace internal {
namespace {

enum class Phase { kPending, kRunning, kDone };

// A byte range of the spool file.
struct SpoolRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct StepState {
  Phase phase = Phase::kPending;
  Child child;
  // The capture file, through the parent's own open file description (the
  // child writes through descriptions of its own; see Launch).
  UniqueFd out;
  // While running: the child's stdout (and, apart, stderr) descriptions.
  // Their positions are where the step's bytes end: a reused capture file
  // holds stale bytes beyond them, never read.
  UniqueFd out_ofd;
  UniqueFd err_ofd;
  // stderr's own file, only where stderr cannot be a region of `out`.
  UniqueFd err;
  // kErrRegion when stderr is written into `out`'s file at that offset.
  uint64_t err_base = 0;
  // The ends of stdout and stderr, fixed when the step ended.
  std::optional<uint64_t> out_end;
  std::optional<uint64_t> err_end;
  // The child shares `out`'s description: the file cannot be reused.
  bool no_recycle = false;
  UniqueFd result;  // result records, fork steps only
  // How much of out/err has been replayed (live streaming of the head).
  uint64_t out_replayed = 0;
  uint64_t err_replayed = 0;
  // Set when the output was moved to the spool file and out/err closed.
  bool spooled = false;
  SpoolRange spool_out;
  SpoolRange spool_err;
  // Output is not replayed (halted steps, as chromite).
  bool drop_output = false;
  // Finished ahead of the head with its capture files still open.
  bool held = false;
  // Tagging: whether the next replayed byte of out / err starts a line.
  bool out_at_line_start = true;
  bool err_at_line_start = true;

  absl::Time started;
  absl::Time deadline = absl::InfiniteFuture();
  absl::Time silent_deadline = absl::InfiniteFuture();
  uint64_t last_output_size = 0;

  KillReason kill = KillReason::kNone;
  KillSequence killing;
};

class Engine {
 public:
  Engine(std::vector<Step> steps, const ParallelOptions& options,
         const RunHooks& hooks, std::string temp_dir)
      : steps_(std::make_move_iterator(steps.begin()),
               std::make_move_iterator(steps.end())),
        options_(options),
        hooks_(hooks),
        temp_dir_(std::move(temp_dir)),
        states_(steps_.size()) {
    reports_.resize(steps_.size());
    for (size_t i = 0; i < steps_.size(); ++i) {
      reports_[i].name = steps_[i].name().empty() ? absl::StrCat("step ", i)
                                                  : steps_[i].name();
    }
    limit_ = options_.max_parallel == 0
                 ? steps_.size()
                 : static_cast<size_t>(options_.max_parallel);
  }

  absl::StatusOr<RunReport> Run();
  void set_sparse_temp_dir(bool sparse) { sparse_temp_dir_ = sparse; }

 private:
  void StartSteps(absl::Time now);
  absl::Status Launch(size_t index, absl::Time now);
  void Finish(size_t index, absl::Time now);
  void Judge(size_t index, int wait_status, absl::Time now);
  void Fail(size_t index, absl::string_view type, std::string message,
            std::string traceback = "");
  void BeginStop(KillReason reason, absl::Time now);
  void StartKill(size_t index, KillReason reason, absl::Time now);
  void CheckDeadlines(absl::Time now);
  absl::Time NextWakeup(absl::Time now) const;
  void Replay();
  void ReplayFd(int fd, uint64_t base, uint64_t bytes, uint64_t* replayed,
                bool* at_line_start, int to, const std::string& prefix);
  // Bytes the step has written to stdout / stderr so far.
  uint64_t OutBytes(const StepState& state) const;
  uint64_t ErrBytes(const StepState& state) const;
  // Where stderr's bytes are read from.
  int ErrFd(const StepState& state) const;
  // A capture file: an emptied one from the pool, or a new one.
  absl::StatusOr<UniqueFd> AcquireCapture();
  // Done with the step's capture files: back to the pool if nothing can
  // still write into them, else closed.
  void ReleaseCapture(StepState& state);
  // Copies [offset, offset + length) of `from` to `to`, with line prefixes
  // when tagging. Returns the bytes consumed from `from`.
  absl::StatusOr<uint64_t> Emit(int from, uint64_t offset, uint64_t length,
                                int to, bool* at_line_start,
                                const std::string& prefix);
  void ReleaseTokens();
  // A copy of the step's body on the heap: steps_ itself is not mapped in
  // the child (see dont_fork_allocator.h), the heap is.
  std::function<absl::StatusOr<std::string>()> Body(size_t index) const {
    return steps_[index].body();
  }
  // The descriptors this run owns now (for children to close).
  void OwnFds(std::vector<int>* fds) const;
  void MaybeSpool(size_t index);
  void Release(size_t index);

  std::vector<Step, DontForkAllocator<Step>> steps_;
  ParallelOptions options_;
  RunHooks hooks_;
  size_t tokens_held_ = 0;  // permissions from hooks_.throttle
  bool waiting_for_token_ = false;
  std::string temp_dir_;
  bool sparse_temp_dir_ = false;
  // Per-step bookkeeping, out of the children's address space (see
  // dont_fork_allocator.h): the cost of a step stays flat as steps grow.
  std::vector<StepState, DontForkAllocator<StepState>> states_;
  std::vector<StepReport, DontForkAllocator<StepReport>> reports_;
  int interrupt_signal_ = 0;
  size_t limit_ = 0;

  UniqueFd dev_null_;
  sigset_t signals_to_reset_;
  std::vector<int> fds_to_close_;  // scratch for Launch
  std::string result_buffer_;      // scratch for Judge
  std::vector<size_t> ended_;      // scratch for Run
  std::vector<UniqueFd> capture_pool_;
  bool leases_work_ = true;
  UniqueFd spool_;
  uint64_t spool_size_ = 0;
  size_t held_captures_ = 0;  // finished, unreplayed steps with open captures

  std::vector<size_t> running_;
  size_t next_start_ = 0;
  size_t next_replay_ = 0;
  bool start_blocked_ = false;  // out of fds or processes: wait for a finish
  KillReason stopping_ = KillReason::kNone;
  bool replay_broken_ = false;  // output_fd stopped taking bytes
};

absl::StatusOr<RunReport> Engine::Run() {
  dev_null_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!dev_null_.valid()) return ErrnoStatus("open /dev/null");
  // Output the caller buffered in stdio comes before anything replayed.
  std::fflush(stdout);
  std::fflush(stderr);

  InterruptScope interrupts;
  // On every way out — an exception from a hook included — the throttle gets
  // its permissions back. (Children are killed and reaped by ~Child.)
  absl::Cleanup give_back = [this] {
    if (hooks_.throttle == nullptr) return;
    for (; tokens_held_ > 0; --tokens_held_) hooks_.throttle->Release();
  };
  // The loop acts on signals for its whole run: between polls it only does
  // bounded work, and the self-pipe wakes the next poll.
  InterruptWait waiting;
  signals_to_reset_ = NonDefaultSignals();
  std::vector<pollfd> fds;
  while (true) {
    absl::Time now = absl::Now();
    if (stopping_ == KillReason::kNone) StartSteps(now);
    Replay();
    if (next_replay_ == steps_.size() && running_.empty()) break;
    if (running_.empty() &&
        (next_start_ == steps_.size() || stopping_ != KillReason::kNone)) {
      // Nothing runs and nothing will start: the rest were never started.
      for (size_t i = next_start_; i < steps_.size(); ++i) {
        states_[i].phase = Phase::kDone;
        reports_[i].outcome = stopping_ == KillReason::kInterrupt
                                  ? StepOutcome::kInterrupted
                                  : StepOutcome::kHalted;
      }
      next_start_ = steps_.size();
      continue;
    }

    fds.clear();
    for (size_t index : running_) {
      fds.push_back({states_[index].child.pidfd(), POLLIN, 0});
    }
    if (interrupts.wake_fd() >= 0)
      fds.push_back({interrupts.wake_fd(), POLLIN, 0});
    if (waiting_for_token_ && hooks_.throttle->wake_fd() >= 0) {
      fds.push_back({hooks_.throttle->wake_fd(), POLLIN, 0});
    }
    const absl::Duration wait = NextWakeup(now) - now;
    timespec timeout = absl::ToTimespec(std::max(wait, absl::ZeroDuration()));
    const int ready =
        ::ppoll(fds.data(), fds.size(),
                wait == absl::InfiniteDuration() ? nullptr : &timeout, nullptr);
    if (ready < 0 && errno != EINTR) {
      // Only EINVAL/ENOMEM are possible; fall back to a short sleep-like wait.
      ::poll(nullptr, 0, 10);
    }
    now = absl::Now();
    if (const int signo = InterruptScope::pending();
        signo != 0 && stopping_ != KillReason::kInterrupt) {
      interrupt_signal_ = signo;
      BeginStop(KillReason::kInterrupt, now);
    }
    if (ready > 0) {
      // Collect first: Finish() edits running_.
      ended_.clear();
      for (size_t i = 0; i < running_.size(); ++i) {
        if (fds[i].revents != 0) ended_.push_back(running_[i]);
      }
      for (size_t index : ended_) Finish(index, now);
    }
    CheckDeadlines(now);
  }
  RunReport report;
  report.interrupt_signal = interrupt_signal_;
  report.steps.reserve(reports_.size());
  for (StepReport& step : reports_) report.steps.push_back(std::move(step));
  return report;
}

void Engine::OwnFds(std::vector<int>* fds) const {
  fds->clear();
  fds->push_back(dev_null_.get());
  // The replay targets belong to the run: a step writing there directly
  // would bypass the ordering. (0-2 are redirected in the child anyway.)
  fds->push_back(options_.output_fd);
  if (!options_.combine_stderr) fds->push_back(options_.error_fd);
  if (spool_.valid()) fds->push_back(spool_.get());
  for (const UniqueFd& fd : capture_pool_) fds->push_back(fd.get());
  for (size_t i = next_replay_; i < next_start_; ++i) {
    const StepState& state = states_[i];
    for (int fd : {state.out.get(), state.out_ofd.get(), state.err_ofd.get(),
                   state.err.get(), state.result.get(), state.child.pidfd()}) {
      if (fd >= 0) fds->push_back(fd);
    }
  }
  // Steps before next_replay_ have released everything; finished steps
  // ahead of the head are within [next_replay_, next_start_).
}

void Engine::ReleaseTokens() {
  // Keep one permission per running step beyond the implicit slot.
  const size_t needed = running_.empty() ? 0 : running_.size() - 1;
  while (tokens_held_ > needed) {
    hooks_.throttle->Release();
    --tokens_held_;
  }
}

void Engine::StartSteps(absl::Time now) {
  waiting_for_token_ = false;
  while (next_start_ < steps_.size() && running_.size() < limit_ &&
         !start_blocked_ && stopping_ == KillReason::kNone) {
    if (hooks_.throttle != nullptr && running_.size() >= tokens_held_ + 1) {
      // Beyond the implicit slot, each running step holds a permission.
      if (!hooks_.throttle->TryAcquire()) {
        waiting_for_token_ = true;
        return;
      }
      ++tokens_held_;
    }
    const size_t index = next_start_;
    absl::Status status = Launch(index, now);
    if (status.ok() && hooks_.on_start) hooks_.on_start(index);
    if (absl::IsResourceExhausted(status) && !running_.empty()) {
      // Out of fds or processes: go on with fewer at once.
      start_blocked_ = true;
      if (hooks_.throttle != nullptr) ReleaseTokens();
      return;
    }
    ++next_start_;
    if (!status.ok()) {
      states_[index].phase = Phase::kDone;
      reports_[index].started = false;
      Fail(index, kProcessStartError,
           absl::StrCat("could not start: ", status.message()));
      if (hooks_.throttle != nullptr) ReleaseTokens();
      if (hooks_.on_end) hooks_.on_end(index, reports_[index]);
      if (options_.halt_on_error) BeginStop(KillReason::kHalt, now);
    }
  }
}

absl::Status Engine::Launch(size_t index, absl::Time now) {
  StepState& state = states_[index];
  const Step& step = steps_[index];
  absl::StatusOr<UniqueFd> out = AcquireCapture();
  if (!out.ok()) return out.status();
  // The child writes through descriptions of its own, so that once the step
  // is over the file can be checked for writers left behind (a lease) and
  // reused: creating a temp file costs ~50us on ext4, reopening ~5us.
  UniqueFd child_out = ReopenAt(out->get(), 0);
  const bool no_recycle = !child_out.valid();
  const int child_stdout = child_out.valid() ? child_out.get() : out->get();
  UniqueFd child_err;
  UniqueFd err;
  uint64_t err_base = 0;
  if (!options_.combine_stderr) {
    // stderr goes far out into the same file: a sparse region of its own.
    if (sparse_temp_dir_ && child_out.valid()) {
      child_err = ReopenAt(out->get(), kErrRegion);
      if (child_err.valid()) err_base = kErrRegion;
    }
    if (!child_err.valid()) {
      absl::StatusOr<UniqueFd> fd = CreateCaptureFile(temp_dir_);
      if (!fd.ok()) return fd.status();
      err = *std::move(fd);
    }
  }
  UniqueFd result;
  if (!step.is_command()) {
    result.reset(::memfd_create("parallel-result", MFD_CLOEXEC));
    if (!result.valid()) {
      const int error = errno;
      if (error == EMFILE || error == ENFILE || error == ENOMEM) {
        return absl::ResourceExhaustedError("memfd_create: too many files");
      }
      return ErrnoStatus(error, "memfd_create");
    }
  }
  ChildIo io;
  io.stdin_fd = dev_null_.get();
  io.stdout_fd = child_stdout;
  io.stderr_fd = options_.combine_stderr ? child_stdout
                 : child_err.valid()     ? child_err.get()
                                         : err.get();
  io.result_fd = result.get();
  io.signals_to_reset = &signals_to_reset_;
  OwnFds(&fds_to_close_);
  io.fds_to_close = &fds_to_close_;
  absl::StatusOr<Child> child =
      step.is_command() ? SpawnChild(step.argv(), io)
                        : ForkChild(Body(index), io, options_.return_values);
  if (!child.ok()) return child.status();

  state.phase = Phase::kRunning;
  state.child = *std::move(child);
  state.out = *std::move(out);
  state.out_ofd = std::move(child_out);
  state.err_ofd = std::move(child_err);
  state.err = std::move(err);
  state.err_base = err_base;
  state.out_end.reset();
  state.err_end.reset();
  state.no_recycle = no_recycle;
  state.result = std::move(result);
  state.started = now;
  state.deadline = now + options_.timeout;
  state.silent_deadline = now + options_.silent_timeout;
  StepReport& report = reports_[index];
  report.started = true;
  report.pid = state.child.pid();
  running_.push_back(index);
  return absl::OkStatus();
}

void Engine::Finish(size_t index, absl::Time now) {
  StepState& state = states_[index];
  const int wait_status = state.child.Reap();
  running_.erase(std::find(running_.begin(), running_.end(), index));
  start_blocked_ = false;
  state.phase = Phase::kDone;

  StepReport& report = reports_[index];
  report.duration = now - state.started;
  if (WIFEXITED(wait_status)) report.exit_code = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) report.signal = WTERMSIG(wait_status);
  state.out_end = OutBytes(state);
  state.err_end = ErrBytes(state);
  state.out_ofd.reset();
  state.err_ofd.reset();
  report.output_bytes = *state.out_end + *state.err_end;

  Judge(index, wait_status, now);
  state.result.reset();
  if (report.outcome == StepOutcome::kFailed) {
    const uint64_t size = OutBytes(state);
    const uint64_t tail = std::min(size, kOutputTailBytes);
    report.output_tail.resize(tail);
    const ssize_t got = RetryOnEintr([&] {
      return ::pread(state.out.get(), report.output_tail.data(), tail,
                     size - tail);
    });
    report.output_tail.resize(got > 0 ? got : 0);
  }
  if (report.outcome == StepOutcome::kFailed && options_.halt_on_error &&
      stopping_ == KillReason::kNone) {
    BeginStop(KillReason::kHalt, now);
  }
  if (index != next_replay_) MaybeSpool(index);
  if (hooks_.throttle != nullptr) ReleaseTokens();
  if (hooks_.on_end) hooks_.on_end(index, report);
}

void Engine::Judge(size_t index, int wait_status, absl::Time) {
  StepState& state = states_[index];
  StepReport& report = reports_[index];
  // Built only for failures: a success allocates nothing here.
  auto who = [&report] {
    return absl::StrCat(report.name, " (pid ", report.pid, ")");
  };

  switch (state.kill) {
    case KillReason::kHalt:
      report.outcome = StepOutcome::kHalted;
      state.drop_output = true;
      return;
    case KillReason::kInterrupt:
      report.outcome = StepOutcome::kInterrupted;
      return;
    default:
      break;
  }

  std::vector<Record> records;
  absl::Status records_status = absl::OkStatus();
  if (state.result.valid()) {
    std::string& bytes = result_buffer_;
    bytes.clear();
    if (absl::StatusOr<uint64_t> size = FileSize(state.result.get());
        size.ok()) {
      bytes.resize(*size);
      size_t got = 0;
      while (got < bytes.size()) {
        const ssize_t n = RetryOnEintr([&] {
          return ::pread(state.result.get(), bytes.data() + got,
                         bytes.size() - got, got);
        });
        if (n <= 0) break;
        got += n;
      }
      bytes.resize(got);
    }
    absl::StatusOr<std::vector<Record>> parsed = ParseRecords(bytes);
    if (parsed.ok()) {
      records = *std::move(parsed);
    } else {
      records_status = parsed.status();
    }
  }
  auto find = [&records](RecordKind kind) -> const Record* {
    for (const Record& record : records) {
      if (record.kind == kind) return &record;
    }
    return nullptr;
  };

  const bool is_command = steps_[index].is_command();
  auto fail_without_result = [&] {
    const Record* hang = find(RecordKind::kHang);
    const Record* crash = find(RecordKind::kCrash);
    ExceptionInfo info = EndedWithoutResult(
        who(), wait_status, state.kill, options_.timeout,
        options_.silent_timeout, hang != nullptr ? hang->payload : "",
        crash != nullptr ? crash->payload : "", is_command);
    Fail(index, info.type, std::move(info.message), std::move(info.traceback));
  };
  if (state.kill != KillReason::kNone || WIFSIGNALED(wait_status) ||
      (is_command && WEXITSTATUS(wait_status) != 0)) {
    fail_without_result();
    return;
  }
  if (is_command) {
    report.outcome = StepOutcome::kSucceeded;
    return;
  }

  if (!records_status.ok()) {
    Fail(index, kCorruptResult,
         absl::StrCat(who(),
                      " sent a corrupt result: ", records_status.message()));
    return;
  }
  if (const Record* failure = find(RecordKind::kFailure); failure != nullptr) {
    absl::StatusOr<std::tuple<std::string, std::string, std::string>> info =
        Decode<std::tuple<std::string, std::string, std::string>>(
            failure->payload);
    if (!info.ok()) {
      Fail(index, kCorruptResult,
           absl::StrCat(who(),
                        " sent a corrupt failure: ", info.status().message()));
      return;
    }
    auto& [type, message, traceback] = *info;
    Fail(index, type, absl::StrCat(message, " [", who(), "]"),
         std::move(traceback));
    return;
  }
  const Record* value = find(RecordKind::kValue);
  if (value == nullptr || WEXITSTATUS(wait_status) != 0) {
    fail_without_result();
    return;
  }
  report.outcome = StepOutcome::kSucceeded;
  report.value = value->payload;
}

void Engine::Fail(size_t index, absl::string_view type, std::string message,
                  std::string traceback) {
  StepReport& report = reports_[index];
  report.outcome = StepOutcome::kFailed;
  ExceptionInfo info;
  info.type = std::string(type);
  info.message = std::move(message);
  info.traceback = std::move(traceback);
  info.step = report.name;
  report.error = std::move(info);
}

void Engine::BeginStop(KillReason reason, absl::Time now) {
  stopping_ = reason;
  for (size_t index : running_) StartKill(index, reason, now);
}

void Engine::StartKill(size_t index, KillReason reason, absl::Time now) {
  StepState& state = states_[index];
  // An interrupt or a halt overrides a timeout already in progress.
  if (state.kill != KillReason::kNone &&
      !(reason == KillReason::kInterrupt || reason == KillReason::kHalt)) {
    return;
  }
  const bool first = state.kill == KillReason::kNone;
  state.kill = reason;
  if (!first) return;  // the kill sequence is already under way
  const bool timed_out =
      reason == KillReason::kTimeout || reason == KillReason::kSilentTimeout;
  // A hung closure writes its stack into its output first; a command has
  // exec'd and cannot.
  state.killing.Start(state.child, timed_out && !steps_[index].is_command(),
                      now);
}

void Engine::CheckDeadlines(absl::Time now) {
  // StartKill() only signals; running_ does not change under this loop.
  for (size_t index : running_) {
    StepState& state = states_[index];
    if (state.killing.started()) {
      state.killing.Advance(state.child, now);
      continue;
    }
    if (now >= state.deadline) {
      StartKill(index, KillReason::kTimeout, now);
      continue;
    }
    if (now >= state.silent_deadline) {
      const uint64_t size = OutBytes(state) + ErrBytes(state);
      if (size != state.last_output_size) {
        state.last_output_size = size;
        state.silent_deadline = now + options_.silent_timeout;
      } else {
        StartKill(index, KillReason::kSilentTimeout, now);
      }
    }
  }
}

absl::Time Engine::NextWakeup(absl::Time now) const {
  absl::Time wake = absl::InfiniteFuture();
  for (size_t index : running_) {
    const StepState& state = states_[index];
    if (state.killing.started()) {
      wake = std::min(wake, state.killing.next());
    } else {
      wake = std::min({wake, state.deadline, state.silent_deadline});
    }
  }
  if (next_replay_ < states_.size() &&
      states_[next_replay_].phase == Phase::kRunning) {
    wake = std::min(wake, now + kLiveStreamInterval);
  }
  return wake;
}

absl::StatusOr<uint64_t> Engine::Emit(int from, uint64_t offset,
                                      uint64_t length, int to,
                                      bool* at_line_start,
                                      const std::string& prefix) {
  if (length == 0) return 0;
  if (hooks_.before_output) hooks_.before_output();
  if (!hooks_.tag_lines) return CopyRange(from, offset, length, to);
  // Tagging rewrites the bytes, so they pass through a buffer.
  std::string chunk;
  std::string tagged;
  uint64_t done = 0;
  while (done < length) {
    chunk.resize(std::min<uint64_t>(length - done, 1 << 16));
    const ssize_t n = RetryOnEintr([&] {
      return ::pread(from, chunk.data(), chunk.size(), offset + done);
    });
    if (n < 0) return ErrnoStatus("pread capture file");
    if (n == 0) break;
    tagged.clear();
    for (ssize_t i = 0; i < n; ++i) {
      if (*at_line_start) tagged += prefix;
      tagged.push_back(chunk[i]);
      *at_line_start = chunk[i] == '\n';
    }
    size_t written = 0;
    while (written < tagged.size()) {
      const ssize_t w = RetryOnEintr([&] {
        return ::write(to, tagged.data() + written, tagged.size() - written);
      });
      if (w < 0 && errno == EAGAIN) {
        pollfd pfd = {to, POLLOUT, 0};
        ::poll(&pfd, 1, -1);
        continue;
      }
      if (w <= 0) return ErrnoStatus("write replayed output");
      written += w;
    }
    done += n;
  }
  return done;
}

uint64_t Engine::OutBytes(const StepState& state) const {
  if (state.out_end) return *state.out_end;
  if (state.out_ofd.valid()) {
    const off_t position = ::lseek(state.out_ofd.get(), 0, SEEK_CUR);
    return position > 0 ? static_cast<uint64_t>(position) : 0;
  }
  return state.out.valid() ? FileSize(state.out.get()).value_or(0) : 0;
}

uint64_t Engine::ErrBytes(const StepState& state) const {
  if (state.err_end) return *state.err_end;
  if (state.err_ofd.valid()) {
    const off_t position = ::lseek(state.err_ofd.get(), 0, SEEK_CUR);
    return position > 0 && static_cast<uint64_t>(position) > state.err_base
               ? static_cast<uint64_t>(position) - state.err_base
               : 0;
  }
  return state.err.valid() ? FileSize(state.err.get()).value_or(0) : 0;
}

int Engine::ErrFd(const StepState& state) const {
  return state.err_base != 0 ? state.out.get() : state.err.get();
}

absl::StatusOr<UniqueFd> Engine::AcquireCapture() {
  if (!capture_pool_.empty()) {
    UniqueFd fd = std::move(capture_pool_.back());
    capture_pool_.pop_back();
    return fd;
  }
  return CreateCaptureFile(temp_dir_);
}

void Engine::ReleaseCapture(StepState& state) {
  UniqueFd fd = std::move(state.out);
  state.out_ofd.reset();
  state.err_ofd.reset();
  state.err.reset();
  if (!fd.valid() || state.no_recycle || !leases_work_ ||
      capture_pool_.size() >= kMaxPooledCaptures) {
    return;
  }
  // A write lease is granted only if no other open file description of the
  // file is open for writing: nothing the step left behind (a process that
  // escaped its process group) can still write into it.
  if (::fcntl(fd.get(), F_SETLEASE, F_WRLCK) != 0) {
    if (errno != EAGAIN && errno != EBUSY) leases_work_ = false;
    return;
  }
  ::fcntl(fd.get(), F_SETLEASE, F_UNLCK);
  // Not truncated: on ext4 that costs as much as a new file. The next step
  // writes from offset 0 and its ends are read from its own descriptions.
  capture_pool_.push_back(std::move(fd));
}

void Engine::ReplayFd(int fd, uint64_t base, uint64_t bytes, uint64_t* replayed,
                      bool* at_line_start, int to, const std::string& prefix) {
  if (replay_broken_ || fd < 0 || bytes <= *replayed) return;
  absl::StatusOr<uint64_t> copied =
      Emit(fd, base + *replayed, bytes - *replayed, to, at_line_start, prefix);
  if (!copied.ok()) {
    replay_broken_ = true;  // e.g. EPIPE with SIGPIPE ignored: stop replaying
    return;
  }
  *replayed += *copied;
}

void Engine::Replay() {
  const int to_err =
      options_.combine_stderr ? options_.output_fd : options_.error_fd;
  while (next_replay_ < states_.size()) {
    StepState& state = states_[next_replay_];
    if (state.phase == Phase::kPending) return;
    if (!state.drop_output) {
      const std::string prefix =
          hooks_.tag_lines ? reports_[next_replay_].name + "\t" : "";
      if (state.spooled) {
        if (!replay_broken_) {
          if (!Emit(spool_.get(), state.spool_out.offset,
                    state.spool_out.length, options_.output_fd,
                    &state.out_at_line_start, prefix)
                   .ok() ||
              !Emit(spool_.get(), state.spool_err.offset,
                    state.spool_err.length, to_err, &state.err_at_line_start,
                    prefix)
                   .ok()) {
            replay_broken_ = true;
          }
        }
      } else {
        ReplayFd(state.out.get(), 0, OutBytes(state), &state.out_replayed,
                 &state.out_at_line_start, options_.output_fd, prefix);
        ReplayFd(ErrFd(state), state.err_base, ErrBytes(state),
                 &state.err_replayed, &state.err_at_line_start, to_err, prefix);
      }
    }
    if (state.phase == Phase::kRunning) return;  // the live head
    Release(next_replay_);
    ++next_replay_;
  }
}

void Engine::MaybeSpool(size_t index) {
  StepState& state = states_[index];
  if (!state.out.valid()) return;
  if (state.drop_output) {
    ReleaseCapture(state);
    return;
  }
  auto hold = [this, &state] {
    state.held = true;
    ++held_captures_;
  };
  if (held_captures_ < kMaxHeldCaptures) {
    hold();
    return;
  }
  if (!spool_.valid()) {
    absl::StatusOr<UniqueFd> spool = CreateCaptureFile(temp_dir_);
    if (!spool.ok()) {
      hold();  // cannot spool: keep the fds, at the cost of fds
      return;
    }
    spool_ = *std::move(spool);
  }
  auto move_to_spool = [this](int fd, uint64_t base, uint64_t bytes,
                              SpoolRange* range) {
    range->offset = spool_size_;
    range->length = 0;
    if (fd < 0 || bytes == 0) return true;
    absl::StatusOr<uint64_t> copied = CopyRange(fd, base, bytes, spool_.get());
    if (!copied.ok()) return false;
    range->length = *copied;
    spool_size_ += *copied;
    return true;
  };
  if (move_to_spool(state.out.get(), 0, OutBytes(state), &state.spool_out) &&
      move_to_spool(ErrFd(state), state.err_base, ErrBytes(state),
                    &state.spool_err)) {
    state.spooled = true;
    ReleaseCapture(state);
  } else {
    hold();
  }
}

void Engine::Release(size_t index) {
  StepState& state = states_[index];
  if (state.held) {
    state.held = false;
    --held_captures_;
  }
  ReleaseCapture(state);
  state.result.reset();
}

}  // namespace

// The test seam (in_process.h): closures run here, one after another, with
// no capture; commands still run as processes, one at a time.
absl::StatusOr<RunReport> RunInProcessEngine(std::vector<Step> steps,
                                             const ParallelOptions& options,
                                             const RunHooks& hooks) {
  RunReport report;
  report.steps.resize(steps.size());
  bool halted = false;
  for (size_t i = 0; i < steps.size(); ++i) {
    StepReport& step = report.steps[i];
    step.name =
        steps[i].name().empty() ? absl::StrCat("step ", i) : steps[i].name();
    if (halted) {
      step.outcome = StepOutcome::kHalted;
      continue;
    }
    if (hooks.on_start) hooks.on_start(i);
    if (steps[i].is_command()) {
      std::vector<Step> one;
      one.push_back(std::move(steps[i]));
      ParallelOptions single = options;
      single.max_parallel = 1;
      absl::StatusOr<RunReport> real =
          Engine(std::move(one), single, RunHooks(),
                 ResolveTempDir(options.temp_dir))
              .Run();
      if (!real.ok()) return real.status();
      const std::string name = step.name;
      step = std::move(real->steps[0]);
      step.name = name;
      if (step.error) step.error->step = name;
    } else {
      std::fflush(stdout);
      const absl::Time start = absl::Now();
      step.started = true;
      step.pid = ::getpid();
      ExceptionInfo error;
      std::string value;
      if (RunInProcess(steps[i].body(),
                       absl::StrCat(step.name, " (in process)"), &value,
                       &error)) {
        step.outcome = StepOutcome::kSucceeded;
        step.exit_code = 0;
        if (options.return_values) step.value = std::move(value);
      } else {
        step.outcome = StepOutcome::kFailed;
        error.step = step.name;
        step.error = std::move(error);
      }
      std::fflush(stdout);
      step.duration = absl::Now() - start;
    }
    if (hooks.on_end) hooks.on_end(i, step);
    if (step.outcome == StepOutcome::kFailed && options.halt_on_error)
      halted = true;
  }
  return report;
}

absl::StatusOr<RunReport> RunEngine(std::vector<Step> steps,
                                    const ParallelOptions& options,
                                    const RunHooks& hooks) {
  if (absl::Status status = ValidateOptions(options); !status.ok())
    return status;
  if (InProcessMode())
    return RunInProcessEngine(std::move(steps), options, hooks);
  std::string temp_dir = ResolveTempDir(options.temp_dir);
  if (absl::Status status = CheckTempDir(temp_dir); !status.ok()) return status;
  const bool sparse = SupportsSparseFiles(temp_dir);
  Engine engine(std::move(steps), options, hooks, std::move(temp_dir));
  engine.set_sparse_temp_dir(sparse);
  return engine.Run();
}

}  // namespace internal
}  // namespace parallel
