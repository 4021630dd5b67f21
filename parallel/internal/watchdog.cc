#include "parallel/internal/watchdog.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
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
// How often the watchdog takes the words waiting in the pipe. It is not
// woken by each word (that would cost the run two context switches per
// step); only the pipe's end wakes it at once.
constexpr int kDrainEveryMs = 50;
// Pipe room asked for: at 4 bytes a word, far more than a run can write in
// kDrainEveryMs. (The default 64 KiB is still 16,384 words.)
constexpr int kPipeBytes = 1 << 18;

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
  // Hold nothing of the run open (its pipes would never see EOF), not even
  // the pipe's write end: its EOF is how the run's end is seen.
  if (read_end != 3) {
    ::dup2(read_end, 3);
    read_end = 3;
  }
  ::fcntl(read_end, F_SETFD, 0);
  ::fcntl(read_end, F_SETFL, O_NONBLOCK);
  ::syscall(SYS_close_range, 4u, ~0u, 0u);
  for (int fd = 0; fd < 3; ++fd) ::close(fd);
  static pid_t groups[kMaxGroups];
  int count = 0;
  int32_t words[1024];
  size_t carried = 0;  // bytes of a word cut by the last read
  while (true) {
    // events 0: woken by the pipe's end (POLLHUP), not by its data.
    pollfd end = {read_end, 0, 0};
    ::poll(&end, 1, kDrainEveryMs);
    bool gone = false;
    while (true) {
      const ssize_t n = ::read(read_end, reinterpret_cast<char*>(words) + carried,
                               sizeof(words) - carried);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        gone = n == 0;  // EOF: every writer closed, the run is gone
        break;
      }
      const size_t bytes = carried + static_cast<size_t>(n);
      const size_t whole = bytes / sizeof(int32_t);
      for (size_t i = 0; i < whole; ++i) {
        const int32_t word = words[i];
        if (word == kGoodbye) ::_exit(0);
        if (word > 0) {
          if (count < kMaxGroups) groups[count++] = word;
          continue;
        }
        for (int j = 0; j < count; ++j) {
          if (groups[j] == -word) {
            groups[j] = groups[--count];
            break;
          }
        }
      }
      carried = bytes % sizeof(int32_t);
      for (size_t i = 0; i < carried; ++i) {
        reinterpret_cast<char*>(words)[i] =
            reinterpret_cast<char*>(words)[whole * sizeof(int32_t) + i];
      }
    }
    if (gone) break;
  }
  for (int i = 0; i < count; ++i) ::kill(-groups[i], SIGKILL);
  ::_exit(0);
}

}  // namespace

absl::StatusOr<Watchdog> Watchdog::Start() {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return ErrnoStatus("watchdog pipe2");
  UniqueFd read_end(ends[0]);
  UniqueFd write_end(ends[1]);
  ::fcntl(write_end.get(), F_SETPIPE_SZ, kPipeBytes);  // best effort
  // Non-blocking, so that a watchdog that stopped reading cannot stall the
  // run (Send).
  if (::fcntl(write_end.get(), F_SETFL, O_NONBLOCK) != 0) {
    return ErrnoStatus("watchdog fcntl");
  }
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus("watchdog fork");
  if (pid == 0) WatchdogMain(read_end.get());
  Watchdog watchdog;
  watchdog.write_end_ = std::move(write_end);
  // Kept so that the pipe always has a reader: a write after the watchdog
  // died fills the pipe instead of raising SIGPIPE in the caller.
  watchdog.read_end_ = std::move(read_end);
  watchdog.pid_ = pid;
  return watchdog;
}

Watchdog::Watchdog(Watchdog&& other) noexcept
    : write_end_(std::move(other.write_end_)),
      read_end_(std::move(other.read_end_)),
      pid_(std::exchange(other.pid_, 0)) {}

Watchdog& Watchdog::operator=(Watchdog&& other) noexcept {
  if (this != &other) {
    Stop();
    write_end_ = std::move(other.write_end_);
    read_end_ = std::move(other.read_end_);
    pid_ = std::exchange(other.pid_, 0);
  }
  return *this;
}

Watchdog::~Watchdog() { Stop(); }

void Watchdog::Send(int32_t word) {
  if (!write_end_.valid()) return;
  while (true) {
    const ssize_t n = RetryOnEintr(
        [&] { return ::write(write_end_.get(), &word, sizeof(word)); });
    if (n == static_cast<ssize_t>(sizeof(word))) return;  // pipes: atomic
    // Full: the watchdog takes words every kDrainEveryMs. If it is gone (a
    // stray kill), the run goes on without its protection.
    if (n < 0 && errno == EAGAIN &&
        ::waitpid(pid_, nullptr, WNOHANG) == 0) {
      pollfd room = {write_end_.get(), POLLOUT, 0};
      RetryOnEintr([&] { return ::poll(&room, 1, kDrainEveryMs); });
      continue;
    }
    write_end_.reset();
    read_end_.reset();
    return;
  }
}

void WatchOwnGroup(int watch_fd) {
  if (watch_fd < 0) return;
  const int32_t word = static_cast<int32_t>(::getpid());
  // A live watchdog empties the pipe every kDrainEveryMs, and a run cannot
  // fill 256 KiB of words in that time: a full pipe means it is stopped or
  // dead, and (a vfork-style child holds its parent meanwhile) not worth a
  // long wait.
  for (int tries = 0; tries < 5; ++tries) {
    const ssize_t n = RetryOnEintr(
        [&] { return ::write(watch_fd, &word, sizeof(word)); });
    if (n == static_cast<ssize_t>(sizeof(word))) return;  // pipes: atomic
    if (n >= 0 || errno != EAGAIN) return;
    pollfd room = {watch_fd, POLLOUT, 0};
    RetryOnEintr([&] { return ::poll(&room, 1, kDrainEveryMs); });
  }
}

void Watchdog::Forget(pid_t group) {
  if (group > 0) Send(-static_cast<int32_t>(group));
}

void Watchdog::Stop() {
  if (!write_end_.valid()) {
    // Never started, or it died and was reaped by Send's check (or not).
    if (pid_ > 0) RetryOnEintr([this] { return ::waitpid(pid_, nullptr, 0); });
    pid_ = 0;
    return;
  }
  Send(kGoodbye);
  write_end_.reset();  // its end wakes the watchdog, which reads goodbye
  read_end_.reset();
  RetryOnEintr([this] { return ::waitpid(pid_, nullptr, 0); });
  pid_ = 0;
}

void Watchdog::AppendFds(std::vector<int>* fds) const {
  if (write_end_.valid()) fds->push_back(write_end_.get());
  if (read_end_.valid()) fds->push_back(read_end_.get());
}

}  // namespace internal
}  // namespace parallel
