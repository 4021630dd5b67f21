#include "parallel/internal/child.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio_ext.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <tuple>
#include <typeinfo>

#include "absl/strings/str_cat.h"
#include "parallel/codec.h"
#include "parallel/internal/demangle.h"
#include "parallel/internal/interrupt.h"
#include "parallel/internal/record.h"
#include "parallel/internal/stack.h"
#include "parallel/internal/throw_trace.h"

extern char** environ;

namespace parallel {
namespace internal {
namespace {

// Exit codes of a forked child that could not even run its step.
constexpr int kExitSetupFailed = 126;

absl::StatusOr<UniqueFd> OpenPidfd(pid_t pid) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return ErrnoStatus("pidfd_open");
  return UniqueFd(fd);
}

bool IsResourceError(int error) {
  return error == EAGAIN || error == ENOMEM || error == EMFILE ||
         error == ENFILE;
}

absl::Status StartError(int error, absl::string_view what) {
  if (IsResourceError(error)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": ", ::strerror(error)));
  }
  return ErrnoStatus(error, what);
}

// Async-signal-safe.
void RedirectFd(int from, int to) {
  if (from == to) {
    // dup2 to itself would keep FD_CLOEXEC; clear it so exec keeps the fd.
    ::fcntl(to, F_SETFD, 0);
  } else if (from >= 0) {
    ::dup2(from, to);
  }
}

// Between fork and the step. Async-signal-safe.
void SetUpChild(const ChildIo& io, pid_t parent) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The parent may have died before prctl took effect.
  if (::getppid() != parent) ::_exit(kExitSetupFailed);

  ResetStateInChild();
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int signo = 1; signo < NSIG; ++signo) {
    if (signo == SIGKILL || signo == SIGSTOP) continue;
    if (io.signals_to_reset == nullptr ||
        sigismember(io.signals_to_reset, signo) == 1) {
      ::sigaction(signo, &dfl, nullptr);
    }
  }
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  // Bytes the parent had buffered in stdio belong to the parent, not the step.
  __fpurge(stdout);
  __fpurge(stderr);
  RedirectFd(io.stdin_fd, STDIN_FILENO);
  RedirectFd(io.stdout_fd, STDOUT_FILENO);
  RedirectFd(io.stderr_fd, STDERR_FILENO);
  InstallChildHandlers(io.result_fd);
}

}  // namespace

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

int Child::Reap() {
  int status = 0;
  if (pid_ <= 0) return status;
  siginfo_t info = {};
  // Wait without reaping, so the pid (and with it the process group id) stays
  // ours while the rest of the group is killed.
  RetryOnEintr(
      [&] { return ::waitid(P_PID, pid_, &info, WEXITED | WNOWAIT); });
  ::kill(-pid_, SIGKILL);
  RetryOnEintr([&] { return ::waitpid(pid_, &status, 0); });
  pid_ = 0;
  pidfd_.reset();
  return status;
}

sigset_t NonDefaultSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signo = 1; signo < NSIG; ++signo) {
    struct sigaction current;
    if (::sigaction(signo, nullptr, &current) == 0 &&
        current.sa_handler != SIG_DFL) {
      sigaddset(&set, signo);
    }
  }
  for (int signo : {SIGPIPE, SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, signo);
  return set;
}

namespace {

void AppendFailure(std::string type, std::string message, std::string traceback,
                   std::string* out) {
  AppendRecord(RecordKind::kFailure,
               Encode(std::make_tuple(std::move(type), std::move(message),
                                      std::move(traceback))),
               out);
}

std::string CurrentExceptionType() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  return type == nullptr ? "unknown" : Demangle(type->name());
}

bool WriteAll(int fd, absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = RetryOnEintr([&] { return ::write(fd, bytes.data(), bytes.size()); });
    if (n <= 0) return false;
    bytes.remove_prefix(n);
  }
  return true;
}

}  // namespace

int RunBody(const std::function<absl::StatusOr<std::string>()>& body,
            bool keep_value, std::string* record) {
  try {
    absl::StatusOr<std::string> value = body();
    if (value.ok()) {
      AppendRecord(RecordKind::kValue, keep_value ? *value : "", record);
      return 0;
    }
    AppendFailure("absl::Status", value.status().ToString(), "", record);
  } catch (const std::exception& e) {
    AppendFailure(CurrentExceptionType(), e.what(), TracebackForCurrentException(),
                  record);
  } catch (...) {
    AppendFailure(CurrentExceptionType(), "unknown exception",
                  TracebackForCurrentException(), record);
  }
  return 1;
}

int RunBodyAndReport(const std::function<absl::StatusOr<std::string>()>& body,
                     int result_fd, bool keep_value) {
  std::string record;
  const int code = RunBody(body, keep_value, &record);
  return WriteAll(result_fd, record) ? code : kExitSetupFailed;
}

absl::StatusOr<Child> ForkChild(
    const std::function<absl::StatusOr<std::string>()>& body,
    const ChildIo& io, bool keep_value) {
  return ForkProcess(
      [&body, &io, keep_value] {
        return RunBodyAndReport(body, io.result_fd, keep_value);
      },
      io);
}

absl::StatusOr<Child> ForkProcess(const std::function<int()>& child_main,
                                  const ChildIo& io) {
  // Load what the children's signal handlers need once, here, so that no
  // child has to (and no handler ever does).
  static const bool prepared = (PrepareChildHandlers(), true);
  (void)prepared;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return StartError(errno, "fork");
  if (pid == 0) {
    SetUpChild(io, parent);
    const int code = child_main();
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    ::_exit(code);
  }
  // Also set the group here, so that signalling it cannot race the child.
  ::setpgid(pid, pid);
  absl::StatusOr<UniqueFd> pidfd = OpenPidfd(pid);
  if (!pidfd.ok()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return pidfd.status();
  }
  return Child(pid, *std::move(pidfd));
}

absl::StatusOr<Child> SpawnChild(const std::vector<std::string>& argv,
                                 const ChildIo& io) {
  if (argv.empty()) return absl::InvalidArgumentError("empty command");
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, io.stdin_fd, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, io.stdout_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, io.stderr_fd, STDERR_FILENO);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int error =
      ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    if (error == ENOENT || error == EACCES || error == ENOEXEC) {
      return absl::NotFoundError(
          absl::StrCat("cannot execute '", argv[0], "': ", ::strerror(error)));
    }
    return StartError(error, absl::StrCat("posix_spawn '", argv[0], "'"));
  }
  absl::StatusOr<UniqueFd> pidfd = OpenPidfd(pid);
  if (!pidfd.ok()) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return pidfd.status();
  }
  return Child(pid, *std::move(pidfd));
}

void ResetStateInChild() { InterruptScope::ForgetInChild(); }

}  // namespace internal
}  // namespace parallel
