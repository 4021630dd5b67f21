#include "parallel/internal/interrupt.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace parallel {
namespace internal {
namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int kSignalCount = sizeof(kSignals) / sizeof(kSignals[0]);

// A spin lock rather than a mutex: a child forked while another thread held
// it must be able to forget it (ForgetInChild), which a mutex does not allow.
std::atomic_flag g_lock = ATOMIC_FLAG_INIT;
int g_scopes = 0;  // guarded by g_lock
struct sigaction g_saved[kSignalCount];  // guarded by g_lock
std::atomic<int> g_wake_read{-1};
std::atomic<int> g_wake_write{-1};
volatile sig_atomic_t g_pending = 0;

class SpinLock {
 public:
  SpinLock() {
    while (g_lock.test_and_set(std::memory_order_acquire)) sched_yield();
  }
  ~SpinLock() { g_lock.clear(std::memory_order_release); }
};

void OnSignal(int signo) {
  const int saved_errno = errno;
  if (g_pending == 0) g_pending = signo;
  const int fd = g_wake_write.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const char byte = 1;
    (void)!::write(fd, &byte, 1);
  }
  errno = saved_errno;
}

sigset_t InterruptSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signo : kSignals) sigaddset(&set, signo);
  return set;
}

}  // namespace

InterruptScope::InterruptScope() {
  const sigset_t block = InterruptSignals();
  pthread_sigmask(SIG_BLOCK, &block, &saved_mask_);
  SpinLock lock;
  if (g_scopes++ > 0) return;
  g_pending = 0;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    g_wake_read.store(fds[0]);
    g_wake_write.store(fds[1]);
  }
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < kSignalCount; ++i) {
    ::sigaction(kSignals[i], &action, &g_saved[i]);
  }
}

InterruptScope::~InterruptScope() {
  {
    SpinLock lock;
    if (--g_scopes == 0) {
      for (int i = 0; i < kSignalCount; ++i) {
        ::sigaction(kSignals[i], &g_saved[i], nullptr);
      }
      const int read_fd = g_wake_read.exchange(-1);
      const int write_fd = g_wake_write.exchange(-1);
      if (read_fd >= 0) ::close(read_fd);
      if (write_fd >= 0) ::close(write_fd);
    }
  }
  pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
}

int InterruptScope::wake_fd() const { return g_wake_read.load(); }

int InterruptScope::pending() { return g_pending; }

void InterruptScope::ForgetInChild() {
  g_lock.clear();
  g_scopes = 0;
  g_pending = 0;
  const int read_fd = g_wake_read.exchange(-1);
  const int write_fd = g_wake_write.exchange(-1);
  if (read_fd >= 0) ::close(read_fd);
  if (write_fd >= 0) ::close(write_fd);
}

void ReraiseSignal(int signo) {
  struct sigaction current;
  ::sigaction(signo, nullptr, &current);
  if (current.sa_handler == SIG_IGN) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signo);
  ::raise(signo);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace internal
}  // namespace parallel
