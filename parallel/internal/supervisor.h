// The one event loop: every child the library starts — a step, a pool
// worker — is watched, timed out, killed and reaped here, and every captured
// byte is drained and replayed from here. Front ends (engine.cc for RunSteps,
// process_pool.cc for the task runners and the executor) are clients: they decide what to
// start and what a result means; the supervisor owns how.
//
//   Supervisor supervisor(&replayer, &client);
//   size_t slot = supervisor.AddSlot();
//   supervisor.Launch(slot, std::move(child), {timeout, silent, true}, now);
//   supervisor.Arm(slot, unit, now);       // the output unit it now feeds
//   while (...) supervisor.Turn();         // calls client.OnEnded(...) etc.
//
// One Turn is one ppoll over: each slot's pidfd and client descriptor (a
// worker's socket), every open output pipe, blocked output sinks, the
// interrupt self-pipe and, when asked, a throttle's wake descriptor. Results
// are handled by priority: an interrupt (SIGINT/SIGTERM/SIGHUP/SIGQUIT)
// first — every child is killed —, then captured output, client messages,
// ended children, and last deadlines. Kill precedence: a halt or interrupt overrides a
// timeout under way, never the reverse.
//
// A watchdog process (watchdog.h) kills the children's process groups — their
// grandchildren included — if the supervisor's process is SIGKILLed.
//
// While a Supervisor lives, SIGCHLD is at its default disposition without
// SA_NOCLDWAIT (the caller's is restored afterwards): with SIGCHLD ignored the
// kernel would reap children itself and their exit status would be lost.
//
// Thread-safety: one supervisor per run, used by one thread at a time (under
// the owner's lock, released only around Turn's wait: WaitHooks).

#ifndef PARALLEL_INTERNAL_SUPERVISOR_H_
#define PARALLEL_INTERNAL_SUPERVISOR_H_

#include <poll.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "parallel/internal/child.h"
#include "parallel/internal/dont_fork_allocator.h"
#include "parallel/internal/interrupt.h"
#include "parallel/internal/replayer.h"
#include "parallel/internal/watchdog.h"

namespace parallel {
namespace internal {

// How often a silent-timeout deadline is re-checked is the timeout itself;
// a unit that produced output since the last check gets a new deadline.
struct SlotOptions {
  absl::Duration timeout = absl::InfiniteDuration();         // per unit
  absl::Duration silent_timeout = absl::InfiniteDuration();  // per unit
  // Closures dump their stack before a timeout kill; commands cannot.
  bool dump_stack_on_timeout = true;
};

class SupervisorClient {
 public:
  virtual ~SupervisorClient() = default;
  // The slot's child ended and was reaped; `why` is the library's reason if
  // it was killed on purpose. The slot is free (Launch may be called again)
  // by the time this runs.
  virtual void OnEnded(size_t slot, const ProcessExit& exit,
                       KillReason why) = 0;
  // The slot's client descriptor is readable (or hung up).
  virtual void OnReadable(size_t slot) { (void)slot; }
  // It can take more bytes, or has failed (the next send says which), and
  // the client asked to be told (WantWritable).
  virtual void OnWritable(size_t slot) { (void)slot; }
};

// What a Turn does around its wait (the ppoll itself), for an owner whose
// other threads use the supervisor and its client meanwhile: BeforeWait
// releases the owner's lock (and may do work that must not hold it),
// AfterWait takes it back. A Turn's poll set and deadline are taken before
// the wait, so what another thread changes meanwhile is seen by the next
// Turn: that thread must wake this one if it cannot wait for an event.
class WaitHooks {
 public:
  virtual void BeforeWait() = 0;
  virtual void AfterWait() = 0;

 protected:
  ~WaitHooks() = default;
};

// The time (absl::Now()'s clock), for event loops that fork: clock_gettime
// through the vDSO, which writes nothing. absl::Now() rewrites a
// calibration record in libabsl_time's data on most calls, and each page a
// parent writes while a young child still shares it is a copy-on-write
// fault (15-20 µs on this project's VMs: BM_ForkWritingPages).
absl::Time LoopNow();

class Supervisor {
 public:
  static constexpr size_t kNoUnit = ~size_t{0};
  // After an interrupt, once every child is gone, output that waits for a
  // reader (a stalled `| less`) is dropped when the reader has taken
  // nothing for this long, so that the caller can end.
  static constexpr absl::Duration kOutputPatience = absl::Seconds(1);

  Supervisor(Replayer* replayer, SupervisorClient* client);
  ~Supervisor();  // kills and reaps every child still running
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  size_t AddSlot();
  // Hands a started child to the slot (which must be free). The child was
  // started with ChildSetup::watch_fd = watch_fd(), or its group is not
  // killed if the caller dies.
  void Launch(size_t slot, Child child, const SlotOptions& options,
              absl::Time now);
  // The child now works for output unit `unit`: its timeout (the slot's, or
  // `timeout` if shorter) and silent timeout start now.
  void Arm(size_t slot, size_t unit, absl::Time now,
           absl::Duration timeout = absl::InfiniteDuration());
  // The child waits for work: no deadlines run.
  void Disarm(size_t slot);
  // A descriptor of the client's to poll for this slot (-1: none), for
  // reading; for writing too while `WantWritable(slot, true)` (until the
  // slot's next Launch).
  void SetClientFd(size_t slot, int fd);
  void WantWritable(size_t slot, bool want);

  bool active(size_t slot) const { return slots_[slot].child.alive(); }
  const Child& child(size_t slot) const { return slots_[slot].child; }
  KillReason kill_reason(size_t slot) const { return slots_[slot].kill; }
  // The signal that had stopped the slot's child (SIGSTOP...) when a
  // timeout began to kill it, else -1. Kept until the slot's next Launch,
  // so OnEnded can say why a stopped child was silent.
  int stop_signal(size_t slot) const { return slots_[slot].stop_signal; }
  size_t active_count() const { return active_; }

  // Starts ending the slot's child for `reason` (see kill precedence).
  void Kill(size_t slot, KillReason reason, absl::Time now);
  // Kills every child; later Launches are the client's to avoid.
  void StopAll(KillReason reason, absl::Time now);
  KillReason stopping() const { return stopping_; }
  // The signal that interrupted the run, or 0.
  int interrupt_signal() const { return interrupt_signal_; }

  // Every descriptor of the run that a new child must close: /dev/null, the
  // watchdog's socket, each running child's pidfd and client descriptor,
  // and the replayer's pipes, spill files and replay targets. The client
  // adds its own (a closure's result file).
  void AppendFds(std::vector<int>* fds) const;
  // Where children register their groups with the watchdog (launch.h); -1
  // if it could not be started.
  int watch_fd() const { return watchdog_.watch_fd(); }
  // /dev/null, read-write: a child's stdin (and a waiting worker's output).
  // -1 if it could not be opened (then children keep the caller's stdin).
  int dev_null() const { return dev_null_.get(); }

  // One wait and what follows. `extra_wake_fd` (a throttle's) ends the wait
  // when readable. `wake_at` bounds it (the client's own next deadline).
  // `hooks`, if any, run just before and after the wait.
  void Turn(int extra_wake_fd = -1,
            absl::Time wake_at = absl::InfiniteFuture(),
            WaitHooks* hooks = nullptr);

 private:
  struct Slot {
    Child child;
    KillSequence killing;
    KillReason kill = KillReason::kNone;
    int stop_signal = -1;
    SlotOptions options;
    size_t unit = kNoUnit;
    absl::Time deadline = absl::InfiniteFuture();
    absl::Time silent_deadline = absl::InfiniteFuture();
    uint64_t last_bytes = 0;
    int client_fd = -1;
    bool client_writes = false;
    uint64_t generation = 0;  // one more for every child launched in it
  };
  enum class Owner { kPidfd, kClient, kUnit, kSink, kWake };

  absl::Time NextWake() const;
  // The descriptors one turn polls, with their owners and kinds.
  void BuildPollSet(int extra_wake_fd);
  // Acts on what ppoll reported: output, client messages, ends.
  void HandleReady(absl::Time now);
  // Whether poll entry `poll_index` still belongs to its slot's child.
  bool Current(size_t poll_index) const;
  void Reap(size_t slot);
  void CheckDeadlines(absl::Time now);

  Replayer* const replayer_;
  SupervisorClient* const client_;
  InterruptScope interrupts_;
  UniqueFd dev_null_;
  // Declared before slots_: destroyed (goodbye, reaped) after them.
  Watchdog watchdog_;
  // Written at every launch and end, never read by a child: out of the
  // children's address space (dont_fork_allocator.h), so that a fork does
  // not write-protect it and the next write costs no fault.
  DontForkVector<Slot> slots_;
  size_t active_ = 0;
  KillReason stopping_ = KillReason::kNone;
  int interrupt_signal_ = 0;
  // After an interrupt: when output still waiting for a reader that takes
  // nothing is dropped (kOutputPatience after the last sign of life).
  absl::Time give_up_output_at_ = absl::InfiniteFuture();
  // Scratch for Turn, kept to avoid allocating every turn.
  // (Out of the children's address space too.)
  DontForkVector<pollfd> fds_;
  DontForkVector<size_t> owners_;
  DontForkVector<Owner> kinds_;
  DontForkVector<uint64_t> generations_;  // by slot, as the turn began
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_SUPERVISOR_H_
