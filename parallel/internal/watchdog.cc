#include "parallel/internal/watchdog.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

namespace parallel {
namespace internal {
namespace {

// Words on the pipe: +pgid watch, -pgid forget, kGoodbye.
constexpr int32_t kGoodbye = 0;
// The most groups watched at once; more are not watched (the run still
// works; those groups just lose this protection).
constexpr int kMaxGroups = 16384;

// The watchdog's life. Async-signal-safe: it runs in a fork of a possibly
// multi-threaded process and touches only its stack and raw syscalls.
[[noreturn]] void WatchdogMain(int read_end) {
  ::setsid();  // no terminal's Ctrl-C, no group kill of the run reaches it
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  for (int signo : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) {
    ::sigaction(signo, &ignore, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Hold nothing of the run open (its pipes would never see EOF).
  if (read_end != 3) {
    ::dup2(read_end, 3);
    read_end = 3;
  }
  ::fcntl(read_end, F_SETFD, 0);
  ::syscall(SYS_close_range, 4u, ~0u, 0u);
  for (int fd = 0; fd < 3; ++fd) ::close(fd);
  static pid_t groups[kMaxGroups];
  int count = 0;
  int32_t word;
  while (true) {
    const ssize_t n = ::read(read_end, &word, sizeof(word));
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof(word))) break;  // EOF: run is gone
    if (word == kGoodbye) ::_exit(0);
    if (word > 0) {
      if (count < kMaxGroups) groups[count++] = word;
      continue;
    }
    for (int i = 0; i < count; ++i) {
      if (groups[i] == -word) {
        groups[i] = groups[--count];
        break;
      }
    }
  }
  for (int i = 0; i < count; ++i) ::kill(-groups[i], SIGKILL);
  ::_exit(0);
}

}  // namespace

absl::StatusOr<Watchdog> Watchdog::Start() {
  // A socket, not a pipe: a write after the watchdog died must not raise
  // SIGPIPE in the caller (SendFully uses MSG_NOSIGNAL).
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    return ErrnoStatus("watchdog socketpair");
  }
  UniqueFd read_end(ends[0]);
  UniqueFd write_end(ends[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus("watchdog fork");
  if (pid == 0) WatchdogMain(read_end.get());
  Watchdog watchdog;
  watchdog.socket_ = std::move(write_end);
  watchdog.pid_ = pid;
  return watchdog;
}

Watchdog::Watchdog(Watchdog&& other) noexcept
    : socket_(std::move(other.socket_)), pid_(std::exchange(other.pid_, 0)) {}

Watchdog& Watchdog::operator=(Watchdog&& other) noexcept {
  if (this != &other) {
    Stop();
    socket_ = std::move(other.socket_);
    pid_ = std::exchange(other.pid_, 0);
  }
  return *this;
}

Watchdog::~Watchdog() { Stop(); }

void Watchdog::Send(int32_t word) {
  // The watchdog reads as fast as words come; if it is gone, the send fails
  // (EPIPE, no signal) and the run goes on unprotected.
  if (socket_.valid()) {
    SendFully(socket_.get(), reinterpret_cast<const char*>(&word), sizeof(word),
              nullptr, 0);
  }
}

void Watchdog::Watch(pid_t group) {
  if (group > 0) Send(static_cast<int32_t>(group));
}

void Watchdog::Forget(pid_t group) {
  if (group > 0) Send(-static_cast<int32_t>(group));
}

void Watchdog::Stop() {
  if (!socket_.valid()) return;
  Send(kGoodbye);
  socket_.reset();
  RetryOnEintr([this] { return ::waitpid(pid_, nullptr, 0); });
  pid_ = 0;
}

}  // namespace internal
}  // namespace parallel
