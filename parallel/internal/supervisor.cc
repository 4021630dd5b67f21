#include "parallel/internal/supervisor.h"

#include <fcntl.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <optional>

#include "absl/time/clock.h"

namespace parallel {
namespace internal {
namespace {

// SIGCHLD at SIG_DFL (no SA_NOCLDWAIT) while any supervisor lives; the
// caller's disposition is restored by the last one.
std::mutex g_sigchld_mutex;
int g_sigchld_users = 0;
struct sigaction g_saved_sigchld;

void AcquireDefaultSigchld() {
  std::lock_guard<std::mutex> lock(g_sigchld_mutex);
  if (g_sigchld_users++ > 0) return;
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGCHLD, nullptr, &g_saved_sigchld);
  if (g_saved_sigchld.sa_handler == SIG_IGN ||
      (g_saved_sigchld.sa_flags & SA_NOCLDWAIT) != 0) {
    ::sigaction(SIGCHLD, &dfl, nullptr);
  }
}

void ReleaseDefaultSigchld() {
  std::lock_guard<std::mutex> lock(g_sigchld_mutex);
  if (--g_sigchld_users > 0) return;
  if (g_saved_sigchld.sa_handler == SIG_IGN ||
      (g_saved_sigchld.sa_flags & SA_NOCLDWAIT) != 0) {
    ::sigaction(SIGCHLD, &g_saved_sigchld, nullptr);
  }
}

// Kill precedence: may `reason` replace `current`?
bool Overrides(KillReason reason, KillReason current) {
  if (current == KillReason::kNone) return true;
  return (reason == KillReason::kHalt || reason == KillReason::kInterrupt) &&
         static_cast<int>(reason) > static_cast<int>(current);
}

}  // namespace

Supervisor::Supervisor(Replayer* replayer, SupervisorClient* client)
    : replayer_(replayer), client_(client) {
  AcquireDefaultSigchld();
  // Output the caller buffered in stdio belongs before anything replayed,
  // and must not be copied into the children.
  std::fflush(stdout);
  std::fflush(stderr);
  dev_null_.reset(
      RetryOnEintr([] { return ::open("/dev/null", O_RDWR | O_CLOEXEC); }));
  // Without it (out of processes) the run still works; only the
  // grandchildren of a SIGKILLed caller would then outlive it.
  if (absl::StatusOr<Watchdog> watchdog = Watchdog::Start(); watchdog.ok()) {
    watchdog_ = *std::move(watchdog);
  }
}

Supervisor::~Supervisor() {
  // Kill each group, forget it while its leader is a zombie, then reap.
  for (Slot& slot : slots_) {
    if (!slot.child.alive()) continue;
    slot.child.SignalGroup(SIGKILL);
    watchdog_.Forget(slot.child.pid());
  }
  slots_.clear();
  ReleaseDefaultSigchld();
}

void Supervisor::AppendFds(std::vector<int>* fds) const {
  if (dev_null_.valid()) fds->push_back(dev_null_.get());
  watchdog_.AppendFds(fds);
  for (const Slot& slot : slots_) {
    if (!slot.child.alive()) continue;
    fds->push_back(slot.child.pidfd());
    if (slot.client_fd >= 0) fds->push_back(slot.client_fd);
  }
  replayer_->AppendFds(fds);
}

size_t Supervisor::AddSlot() {
  slots_.emplace_back();
  return slots_.size() - 1;
}

void Supervisor::Launch(size_t index, Child child, const SlotOptions& options,
                        absl::Time now) {
  Slot& slot = slots_[index];
  slot.child = std::move(child);
  ++slot.generation;
  slot.killing = KillSequence();
  slot.kill = KillReason::kNone;
  slot.stop_signal = -1;
  slot.options = options;
  slot.client_fd = -1;
  slot.client_writes = false;
  ++active_;
  Disarm(index);
  (void)now;
}

void Supervisor::Arm(size_t index, size_t unit, absl::Time now,
                     absl::Duration timeout) {
  Slot& slot = slots_[index];
  slot.unit = unit;
  slot.deadline = now + std::min(slot.options.timeout, timeout);
  slot.silent_deadline = now + slot.options.silent_timeout;
  slot.last_bytes = unit == kNoUnit ? 0 : replayer_->total(unit);
}

void Supervisor::Disarm(size_t index) {
  Slot& slot = slots_[index];
  slot.unit = kNoUnit;
  slot.deadline = absl::InfiniteFuture();
  slot.silent_deadline = absl::InfiniteFuture();
}

void Supervisor::SetClientFd(size_t index, int fd) {
  slots_[index].client_fd = fd;
}

void Supervisor::WantWritable(size_t index, bool want) {
  slots_[index].client_writes = want;
}

void Supervisor::Kill(size_t index, KillReason reason, absl::Time now) {
  Slot& slot = slots_[index];
  if (!slot.child.alive() || !Overrides(reason, slot.kill)) return;
  const bool first = slot.kill == KillReason::kNone;
  slot.kill = reason;
  if (!first) return;  // the kill sequence is already under way
  const bool timed_out =
      reason == KillReason::kTimeout || reason == KillReason::kSilentTimeout;
  if (timed_out) slot.stop_signal = slot.child.StopSignal().value_or(-1);
  slot.child.Apply(
      slot.killing.Start(timed_out && slot.options.dump_stack_on_timeout, now));
}

void Supervisor::StopAll(KillReason reason, absl::Time now) {
  if (Overrides(reason, stopping_)) stopping_ = reason;
  for (size_t i = 0; i < slots_.size(); ++i) Kill(i, reason, now);
}

absl::Time Supervisor::NextWake() const {
  absl::Time wake = absl::InfiniteFuture();
  if (interrupt_signal_ != 0 && replayer_->output_blocked()) {
    wake = give_up_output_at_;
  }
  for (const Slot& slot : slots_) {
    if (!slot.child.alive()) continue;
    wake = std::min(wake, slot.killing.started()
                              ? slot.killing.next()
                              : std::min(slot.deadline, slot.silent_deadline));
  }
  return wake;
}

void Supervisor::Reap(size_t index) {
  Slot& slot = slots_[index];
  if (slot.unit != kNoUnit) replayer_->Drain(slot.unit);
  // The pidfd said it ended: its leader is a zombie until Reap, so the
  // group id cannot be reused before the watchdog forgets it.
  watchdog_.Forget(slot.child.pid());
  const ProcessExit exit = slot.child.Reap();
  const KillReason why = slot.kill;
  slot.kill = KillReason::kNone;
  slot.killing = KillSequence();
  slot.client_fd = -1;
  slot.client_writes = false;
  Disarm(index);
  --active_;
  client_->OnEnded(index, exit, why);
}

void Supervisor::CheckDeadlines(absl::Time now) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (!slot.child.alive()) continue;
    if (slot.killing.started()) {
      slot.child.Apply(slot.killing.Advance(now));
      continue;
    }
    if (now >= slot.deadline) {
      Kill(i, KillReason::kTimeout, now);
    } else if (now >= slot.silent_deadline) {
      const uint64_t bytes =
          slot.unit == kNoUnit ? 0 : replayer_->total(slot.unit);
      if (bytes != slot.last_bytes) {
        slot.last_bytes = bytes;
        slot.silent_deadline = now + slot.options.silent_timeout;
      } else {
        Kill(i, KillReason::kSilentTimeout, now);
      }
    }
  }
}

bool Supervisor::Current(size_t poll_index) const {
  const Slot& slot = slots_[owners_[poll_index]];
  return slot.child.alive() &&
         slot.generation == generations_[owners_[poll_index]];
}

void Supervisor::BuildPollSet(int extra_wake_fd) {
  fds_.clear();
  owners_.clear();
  kinds_.clear();
  generations_.clear();
  auto add = [this](int fd, short events, Owner kind, size_t owner) {
    fds_.push_back({fd, events, 0});
    kinds_.push_back(kind);
    owners_.push_back(owner);
  };
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].child.alive()) continue;
    add(slots_[i].child.pidfd(), POLLIN, Owner::kPidfd, i);
    if (slots_[i].client_fd >= 0) {
      add(slots_[i].client_fd,
          POLLIN | (slots_[i].client_writes ? POLLOUT : 0), Owner::kClient,
          i);
    }
  }
  const size_t before = fds_.size();
  replayer_->AppendPollFds(&fds_, &owners_);
  for (size_t i = before; i < fds_.size(); ++i) {
    kinds_.push_back(owners_[i] == Replayer::kSinkOwner ? Owner::kSink
                                                        : Owner::kUnit);
  }
  // Once the interrupt is taken, its self-pipe (never drained) would only
  // wake every turn at once.
  if (interrupts_.wake_fd() >= 0 && interrupt_signal_ == 0)
    add(interrupts_.wake_fd(), POLLIN, Owner::kWake, 0);
  if (extra_wake_fd >= 0) add(extra_wake_fd, POLLIN, Owner::kWake, 0);
  // A slot's child may end and another start in it within this turn, with
  // the same descriptor numbers: events are matched by generation too.
  for (const Slot& slot : slots_) generations_.push_back(slot.generation);
}

void Supervisor::HandleReady(absl::Time now) {
  // Output first, so that a child's last bytes are in before its end is
  // handled; then client messages; then ends.
  for (size_t i = 0; i < fds_.size(); ++i) {
    if (fds_[i].revents == 0) continue;
    if (kinds_[i] == Owner::kUnit) replayer_->Drain(owners_[i]);
    if (kinds_[i] == Owner::kSink) {
      replayer_->SinkWritable(fds_[i].fd);
      if (interrupt_signal_ != 0) give_up_output_at_ = now + kOutputPatience;
    }
  }
  for (size_t i = 0; i < fds_.size(); ++i) {
    if (fds_[i].revents == 0 || kinds_[i] != Owner::kClient) continue;
    // Checked before each call: the one before may have ended the child.
    const auto current = [&] {
      return Current(i) && slots_[owners_[i]].client_fd == fds_[i].fd;
    };
    if ((fds_[i].revents & ~POLLOUT) != 0 && current()) {
      client_->OnReadable(owners_[i]);
    }
    if ((fds_[i].revents & (POLLOUT | POLLERR | POLLHUP)) != 0 &&
        slots_[owners_[i]].client_writes && current()) {
      client_->OnWritable(owners_[i]);
    }
  }
  for (size_t i = 0; i < fds_.size(); ++i) {
    if (fds_[i].revents != 0 && kinds_[i] == Owner::kPidfd && Current(i)) {
      Reap(owners_[i]);
    }
  }
}

absl::Time LoopNow() {
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return absl::TimeFromTimespec(now);
}

void Supervisor::Turn(int extra_wake_fd, absl::Time wake_at,
                      WaitHooks* hooks) {
  BuildPollSet(extra_wake_fd);
  absl::Time now = LoopNow();
  const absl::Time wake = std::min(NextWake(), wake_at);
  int ready;
  {
    // While we wait, we act on SIGINT/SIGTERM/SIGHUP/SIGQUIT (interrupt.h).
    // A loop that holds a wait for its whole length (the engine, the
    // executor) is not marked again every turn: that would write to a page
    // the last fork shared with a young child (a copy-on-write fault).
    std::optional<InterruptWait> waiting;
    if (!InterruptWait::HeldByThisThread()) waiting.emplace();
    timespec timeout =
        absl::ToTimespec(std::max(wake - now, absl::ZeroDuration()));
    if (hooks != nullptr) hooks->BeforeWait();
    ready =
        ::ppoll(fds_.data(), fds_.size(),
                wake == absl::InfiniteFuture() ? nullptr : &timeout, nullptr);
    if (hooks != nullptr) hooks->AfterWait();
  }
  now = LoopNow();
  // Priority: an interrupt beats everything that came with it.
  if (const int signo = InterruptScope::pending();
      signo != 0 && interrupt_signal_ == 0) {
    interrupt_signal_ = signo;
    give_up_output_at_ = now + kOutputPatience;
    StopAll(KillReason::kInterrupt, now);
  }
  if (ready > 0) HandleReady(now);
  now = LoopNow();
  CheckDeadlines(now);
  replayer_->Pump();
  if (interrupt_signal_ != 0 && active_ == 0 && now >= give_up_output_at_ &&
      replayer_->output_blocked()) {
    replayer_->GiveUpBlockedOutput();
    replayer_->Pump();
  }
}

}  // namespace internal
}  // namespace parallel
