#include "parallel/internal/child.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include "parallel/internal/stack.h"

namespace parallel {
namespace internal {

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)), pidfd_(std::move(other.pidfd_)) {}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    if (alive()) {
      SignalGroup(SIGKILL);
      Reap();
    }
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::move(other.pidfd_);
  }
  return *this;
}

Child::~Child() {
  if (alive()) {
    SignalGroup(SIGKILL);
    Reap();
  }
}

void Child::SignalGroup(int signo) const {
  if (pid_ > 0) ::kill(-pid_, signo);
}

void Child::SignalMainThread(int signo) const {
  if (pid_ > 0) ::syscall(SYS_tgkill, pid_, pid_, signo);
}

void Child::Apply(KillAction action) const {
  switch (action) {
    case KillAction::kNone:
      return;
    case KillAction::kDumpStack:
      SignalMainThread(kDumpStackSignal);
      return;
    case KillAction::kTerminate:
      SignalGroup(SIGTERM);
      SignalGroup(SIGCONT);
      return;
    case KillAction::kKill:
      SignalGroup(SIGKILL);
      return;
  }
}

std::optional<int> Child::StopSignal() const {
  if (pid_ <= 0) return std::nullopt;
  siginfo_t info = {};
  if (::waitid(P_PID, pid_, &info, WSTOPPED | WNOHANG | WNOWAIT) != 0 ||
      info.si_pid != pid_ || info.si_code != CLD_STOPPED) {
    return std::nullopt;
  }
  return info.si_status;
}

ProcessExit Child::Reap() {
  if (pid_ <= 0) return ProcessExit::Lost();
  siginfo_t info = {};
  const int waited = RetryOnEintr(
      [&] { return ::waitid(P_PID, pid_, &info, WEXITED | WNOWAIT); });
  ProcessExit exit = ProcessExit::Lost();
  if (waited == 0 && info.si_pid == pid_) {
    exit = ProcessExit::FromSiginfo(info);
    // Still a zombie: the group id cannot have been reused.
    ::kill(-pid_, SIGKILL);
    RetryOnEintr([&] { return ::waitpid(pid_, nullptr, 0); });
  }
  // Else another waiter reaped it: its pid may already be reused, so its
  // group is not signalled (a group with live members keeps its id, and
  // those members got SIGTERM/SIGKILL with the rest of the group if the run
  // was stopping).
  pid_ = 0;
  pidfd_.reset();
  return exit;
}

KillAction KillSequence::Start(bool dump_stack_first, absl::Time now) {
  if (started()) return KillAction::kNone;
  if (dump_stack_first) {
    stage_ = Stage::kDump;
    next_ = now + kDumpGrace;
    return KillAction::kDumpStack;
  }
  stage_ = Stage::kTerm;
  next_ = now + kKillGrace;
  return KillAction::kTerminate;
}

KillAction KillSequence::Advance(absl::Time now) {
  if (now < next_) return KillAction::kNone;
  switch (stage_) {
    case Stage::kDump:
      stage_ = Stage::kTerm;
      next_ = now + kKillGrace;
      return KillAction::kTerminate;
    case Stage::kTerm:
      stage_ = Stage::kKill;
      next_ = absl::InfiniteFuture();
      return KillAction::kKill;
    default:
      return KillAction::kNone;
  }
}

}  // namespace internal
}  // namespace parallel
