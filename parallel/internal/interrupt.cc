#include "parallel/internal/interrupt.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace parallel {
namespace internal {
namespace {

// The first kAlwaysCaught are caught unless ignored (a caller's handler
// still runs when no loop waits); the others, whose default action also
// ends the process, only while they have that default.
constexpr int kSignals[] = {SIGINT,  SIGTERM,   SIGHUP,  SIGQUIT,
                            SIGUSR1, SIGUSR2,   SIGALRM, SIGVTALRM,
                            SIGPROF, SIGXCPU,   SIGXFSZ};
constexpr int kAlwaysCaught = 4;
constexpr int kSignalCount = sizeof(kSignals) / sizeof(kSignals[0]);

// A spin lock rather than a mutex: a child forked while another thread held
// it must be able to forget it (ForgetInChild), which a mutex does not allow.
std::atomic_flag g_lock = ATOMIC_FLAG_INIT;
int g_scopes = 0;  // guarded by g_lock
struct sigaction
    g_saved[kSignalCount];  // written under g_lock, read by handlers
bool g_caught[kSignalCount];  // guarded by g_lock
std::atomic<int> g_waiters{0};
// The calling thread's InterruptWaits (HeldByThisThread).
thread_local int t_waits = 0;
std::atomic<int> g_wake_read{-1};
std::atomic<int> g_wake_write{-1};
// Lock-free, so async-signal-safe. The handler stores it after writing the
// wake byte (release) and the loop loads it (acquire): what the handler did
// happens before whatever the loop does next — closing the pipe included.
std::atomic<int> g_pending{0};
static_assert(std::atomic<int>::is_always_lock_free);

class SpinLock {
 public:
  SpinLock() {
    while (g_lock.test_and_set(std::memory_order_acquire)) sched_yield();
  }
  ~SpinLock() { g_lock.clear(std::memory_order_release); }
};

int IndexOf(int signo) {
  for (int i = 0; i < kSignalCount; ++i) {
    if (kSignals[i] == signo) return i;
  }
  return -1;
}

// Async-signal-safe.
void ForwardToCaller(int signo, siginfo_t* info, void* context) {
  const int index = IndexOf(signo);
  if (index < 0) return;
  const struct sigaction& previous = g_saved[index];
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(signo, info, context);
  } else if (previous.sa_handler == SIG_IGN) {
    return;
  } else if (previous.sa_handler == SIG_DFL) {
    // Let the default action happen: it is delivered once this handler
    // returns and unblocks the signal.
    ::sigaction(signo, &previous, nullptr);
    ::raise(signo);
  } else {
    previous.sa_handler(signo);
  }
}

void OnSignal(int signo, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  if (g_waiters.load(std::memory_order_relaxed) == 0) {
    ForwardToCaller(signo, info, context);
  } else {
    const int fd = g_wake_write.load(std::memory_order_relaxed);
    if (fd >= 0) {
      const char byte = 1;
      (void)!::write(fd, &byte, 1);
    }
    int none = 0;
    g_pending.compare_exchange_strong(none, signo, std::memory_order_release);
  }
  errno = saved_errno;
}

}  // namespace

InterruptScope::InterruptScope() {
  SpinLock lock;
  if (g_scopes++ > 0) return;
  g_pending.store(0);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    g_wake_read.store(fds[0]);
    g_wake_write.store(fds[1]);
  }
  struct sigaction action = {};
  action.sa_sigaction = OnSignal;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < kSignalCount; ++i) {
    struct sigaction& previous = g_saved[i];
    ::sigaction(kSignals[i], nullptr, &previous);
    const bool is_default = (previous.sa_flags & SA_SIGINFO) == 0 &&
                            previous.sa_handler == SIG_DFL;
    const bool ignored = (previous.sa_flags & SA_SIGINFO) == 0 &&
                         previous.sa_handler == SIG_IGN;
    // Ignored stays ignored (nohup, a background job's SIGINT), as make,
    // sh and GNU parallel leave it.
    g_caught[i] = !ignored && (i < kAlwaysCaught || is_default);
    if (g_caught[i]) ::sigaction(kSignals[i], &action, nullptr);
  }
}

InterruptScope::~InterruptScope() {
  SpinLock lock;
  if (--g_scopes > 0) return;
  for (int i = 0; i < kSignalCount; ++i) {
    if (g_caught[i]) ::sigaction(kSignals[i], &g_saved[i], nullptr);
  }
  const int read_fd = g_wake_read.exchange(-1);
  const int write_fd = g_wake_write.exchange(-1);
  if (read_fd >= 0) ::close(read_fd);
  if (write_fd >= 0) ::close(write_fd);
}

int InterruptScope::wake_fd() const { return g_wake_read.load(); }

int InterruptScope::pending() {
  return g_pending.load(std::memory_order_acquire);
}

void InterruptScope::ForgetInChild() {
  g_lock.clear();
  g_scopes = 0;
  g_pending.store(0);
  g_waiters.store(0);
  t_waits = 0;
  const int read_fd = g_wake_read.exchange(-1);
  const int write_fd = g_wake_write.exchange(-1);
  if (read_fd >= 0) ::close(read_fd);
  if (write_fd >= 0) ::close(write_fd);
}

InterruptWait::InterruptWait() {
  g_waiters.fetch_add(1);
  ++t_waits;
}

InterruptWait::~InterruptWait() {
  --t_waits;
  g_waiters.fetch_sub(1);
}

bool InterruptWait::HeldByThisThread() { return t_waits > 0; }

bool MayBeCaught(int signo) {
  for (int caught : kSignals) {
    if (caught == signo) return true;
  }
  return false;
}

void ReraiseSignal(int signo) {
  struct sigaction current;
  ::sigaction(signo, nullptr, &current);
  if (current.sa_handler == SIG_IGN) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signo);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(signo);
}

}  // namespace internal
}  // namespace parallel
