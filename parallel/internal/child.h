// The OS boundary, passive half: one object per child process, and the kill
// sequence that ends one. Neither does anything on its own: the supervisor
// (supervisor.h) polls the pidfd, decides when to act, and reaps.
//
//   Child child = ...;                       // from launch.h
//   KillSequence killing;
//   child.Apply(killing.Start(/*dump_stack_first=*/true, absl::Now()));
//   ... when absl::Now() >= killing.next():
//   child.Apply(killing.Advance(absl::Now()));
//   ProcessExit exit = child.Reap();         // once the pidfd is readable
//
// Destroying a Child that was not reaped kills its whole process group and
// reaps it, so no path leaves a zombie or a stray process behind.
//
// Thread-safety: thread-compatible.

#ifndef PARALLEL_INTERNAL_CHILD_H_
#define PARALLEL_INTERNAL_CHILD_H_

#include <sys/types.h>

#include <optional>

#include "absl/time/time.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/process_exit.h"

namespace parallel {
namespace internal {

// After SIGTERM, how long a process group gets before SIGKILL.
inline constexpr absl::Duration kKillGrace = absl::Milliseconds(500);
// How long a hung child gets to dump its stack before SIGTERM.
inline constexpr absl::Duration kDumpGrace = absl::Milliseconds(250);

// What the kill sequence asks for next.
enum class KillAction {
  kNone,
  kDumpStack,  // kDumpStackSignal to the main thread (stack.h)
  kTerminate,  // SIGTERM to the process group
  kKill,       // SIGKILL to the process group
};

// Why the library ends a running child, in increasing precedence: a halt or
// an interrupt overrides a timeout already under way (never the reverse), and
// an interrupt overrides a halt.
enum class KillReason { kNone, kTimeout, kSilentTimeout, kHalt, kInterrupt };

class Child {
 public:
  Child() = default;
  // Takes ownership of a started child that leads its own process group.
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  ~Child();

  pid_t pid() const { return pid_; }
  // Readable once the child has ended.
  int pidfd() const { return pidfd_.get(); }
  bool alive() const { return pid_ > 0; }

  // Sends `signo` to the child's process group (grandchildren too).
  void SignalGroup(int signo) const;
  // Sends `signo` to the child's main thread only.
  void SignalMainThread(int signo) const;
  // Carries out what a KillSequence asked for. kTerminate also sends
  // SIGCONT, as a shell's `kill` does, so that a stopped group can act on
  // its SIGTERM.
  void Apply(KillAction action) const;
  // If the child is stopped now (SIGSTOP, SIGTSTP, a terminal stop), the
  // signal that stopped it; nullopt while it runs. One waitid(WNOWAIT):
  // nothing is consumed.
  std::optional<int> StopSignal() const;
  // Blocks until the child has ended, kills whatever is left of its process
  // group, reaps it and says how it ended. The status is read without
  // reaping first (waitid WNOWAIT), so the pid — and with it the process
  // group id — stays ours while the group is killed. If another waiter took
  // the status, ProcessExit::Lost().
  ProcessExit Reap();

 private:
  pid_t pid_ = 0;
  UniqueFd pidfd_;
};

// How a child is ended: optionally a stack dump of its main thread first,
// then SIGTERM to its process group, then SIGKILL after kKillGrace. Passive
// and clock-free: the caller passes the time and carries out the action, so
// the sequence is tested without processes or sleeps.
class KillSequence {
 public:
  bool started() const { return stage_ != Stage::kIdle; }
  // When Advance() should be called next; InfiniteFuture when nothing is due.
  absl::Time next() const { return next_; }
  // Begins the sequence (kNone if it already began).
  KillAction Start(bool dump_stack_first, absl::Time now);
  // The next action if it is due at `now`, else kNone.
  KillAction Advance(absl::Time now);

 private:
  enum class Stage { kIdle, kDump, kTerm, kKill };

  Stage stage_ = Stage::kIdle;
  absl::Time next_ = absl::InfiniteFuture();
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_CHILD_H_
