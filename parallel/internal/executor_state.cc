#include "parallel/internal/executor_state.h"

#include <tuple>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "parallel/codec.h"
#include "parallel/internal/call_body.h"

namespace parallel {
namespace internal {

namespace {

constexpr absl::string_view kInfoUrl = "parallel/ExceptionInfo";

}  // namespace

std::optional<ExceptionInfo> InfoFromStatus(const absl::Status& status) {
  const auto payload = status.GetPayload(kInfoUrl);
  if (!payload) return std::nullopt;
  std::tuple<std::string, std::string, std::string, std::string, int64_t>
      fields;
  if (!DecodeInto(std::string(*payload), &fields).ok()) return std::nullopt;
  auto& [type, message, traceback, step, pid] = fields;
  return ExceptionInfo{std::move(type), std::move(message),
                       std::move(traceback), std::move(step),
                       static_cast<int>(pid)};
}

absl::Status StatusWithInfo(absl::StatusCode code, const ExceptionInfo& info) {
  absl::Status status(code, absl::StrCat(info.step, ": ", info.ToString()));
  status.SetPayload(kInfoUrl,
                    absl::Cord(Encode(std::make_tuple(
                        info.type, info.message, info.traceback, info.step,
                        static_cast<int64_t>(info.pid)))));
  return status;
}

absl::Status CorruptValue(const absl::Status& decode_error) {
  return StatusWithInfo(absl::StatusCode::kUnknown,
                        {std::string(kCorruptResult),
                         std::string(decode_error.message()), "", "", 0});
}

// TaskState.

bool TaskState::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return phase_ == Phase::kDone;
}

bool TaskState::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

bool TaskState::Give(ClaimWord* claim) {
  std::lock_guard<std::mutex> lock(mu_);
  // kGiven: a worker that died before starting it gave it back.
  if (phase_ == Phase::kDone) return false;
  phase_ = Phase::kGiven;
  claim_ = claim;
  return true;
}

bool TaskState::Cancel(bool kill_if_running) {
  std::vector<Callback> callbacks;
  bool given;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kDone) return cancelled_;
    given = phase_ == Phase::kGiven;
    // Sent to a worker that has not started it: withdrawn, it never will.
    // (The word is not reused for another task before this one is done:
    // that needs mu_, held here.)
    if (given && claim_ != nullptr && ClaimWithdraw(claim_, index_.load())) {
      given = false;
    }
    if (given && !kill_if_running) return false;
    phase_ = Phase::kDone;
    cancelled_ = true;
    raw_ = absl::CancelledError(absl::StrCat(name_, " was cancelled"));
    running_callbacks_ = true;
  }
  done_.notify_all();
  if (latch_ != nullptr) latch_->CountDown();
  if (given) core_->Kill(index_.load());
  RunCallbacks();
  return true;
}

bool TaskState::Resolve(Raw raw, bool cancelled) {
  bool callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kDone) return false;
    phase_ = Phase::kDone;
    cancelled_ = cancelled;
    raw_ = std::move(raw);
    // With none yet, one added from now on runs in its OnDone(); not taking
    // the lock again here spares the woken waiter a wait for it.
    callbacks = !callbacks_.empty();
    running_callbacks_ = callbacks;
  }
  done_.notify_all();
  if (latch_ != nullptr) latch_->CountDown();
  if (callbacks) RunCallbacks();
  return true;
}

bool TaskState::WaitFor(absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  auto done = [this] { return phase_ == Phase::kDone; };
  if (timeout == absl::InfiniteDuration()) {
    done_.wait(lock, done);
    return true;
  }
  return done_.wait_for(lock, absl::ToChronoNanoseconds(timeout), done);
}

const TaskState::Raw& TaskState::Wait() const {
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [this] { return phase_ == Phase::kDone; });
  return raw_;  // never written again
}

void TaskState::AddCallback(Callback callback) {
  bool closed;
  {
    std::lock_guard<std::mutex> lock(failures_->mu);
    closed = failures_->closed;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    // While the completing thread runs callbacks, it runs this one after
    // them: registration order holds.
    if (phase_ != Phase::kDone || running_callbacks_) {
      callbacks_.push_back(std::move(callback));
      return;
    }
    if (!closed) {
      running_callbacks_ = true;
      callbacks_.push_back(std::move(callback));
    }
  }
  if (closed) {
    // After Shutdown() nobody would raise its exception: the caller of
    // OnDone() gets it.
    callback(raw_);
    return;
  }
  RunCallbacks();
}

void TaskState::RunCallbacks() {
  std::vector<Callback> batch;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (callbacks_.empty()) {
        running_callbacks_ = false;
        return;
      }
      batch.swap(callbacks_);  // those added meanwhile run after these
    }
    for (Callback& callback : batch) {
      std::string unused;
      ExceptionInfo error;
      if (CallBody(
              [&]() -> absl::StatusOr<std::string> {
                callback(raw_);
                return std::string();
              },
              &unused, &error, /*traceback=*/false)) {
        continue;
      }
      error.step = absl::StrCat("callback of ", name_);
      std::lock_guard<std::mutex> lock(failures_->mu);
      failures_->failures.push_back(std::move(error));
    }
    batch.clear();
  }
}

void Latch::CountDown() {
  // Notified under the lock: the waiter may destroy the latch once it has
  // the lock back.
  std::lock_guard<std::mutex> lock(mu_);
  if (--left_ == 0) zero_.notify_all();
}

void Latch::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  zero_.wait(lock, [this] { return left_ == 0; });
}

// CompletionRange.

CompletionRange::CompletionRange(const std::vector<TaskState*>& states)
    : queue_(std::make_shared<Queue>()), total_(states.size()) {
  std::vector<size_t> pending;
  {
    std::lock_guard<std::mutex> lock(queue_->mu);
    for (size_t i = 0; i < states.size(); ++i) {
      if (states[i]->done()) {
        queue_->done.push_back(i);
      } else {
        pending.push_back(i);
      }
    }
  }
  for (size_t i : pending) {
    states[i]->AddCallback([queue = queue_, i](const TaskState::Raw&) {
      {
        std::lock_guard<std::mutex> lock(queue->mu);
        queue->done.push_back(i);
      }
      queue->ready.notify_one();
    });
  }
}

void CompletionRange::Advance() {
  if (taken_ >= total_) {
    taken_ = total_ + 1;
    return;
  }
  std::unique_lock<std::mutex> lock(queue_->mu);
  queue_->ready.wait(lock, [this] { return !queue_->done.empty(); });
  current_ = queue_->done.front();
  queue_->done.pop_front();
  ++taken_;
}

}  // namespace internal
}  // namespace parallel
