#include "parallel/internal/child.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <tuple>
#include <typeinfo>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "parallel/codec.h"
#include "parallel/failure.h"
#include "parallel/internal/call_body.h"
#include "parallel/internal/interrupt.h"
#include "parallel/internal/record.h"
#include "parallel/internal/stack.h"

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
  if (io.fds_to_close != nullptr) {
    for (int fd : *io.fds_to_close) {
      if (fd > STDERR_FILENO && fd != io.result_fd) ::close(fd);
    }
  }
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
  RetryOnEintr([&] { return ::waitid(P_PID, pid_, &info, WEXITED | WNOWAIT); });
  ::kill(-pid_, SIGKILL);
  RetryOnEintr([&] { return ::waitpid(pid_, &status, 0); });
  pid_ = 0;
  pidfd_.reset();
  return status;
}

std::string SignalName(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev == nullptr ? absl::StrCat("signal ", signo)
                           : absl::StrCat("SIG", abbrev);
}

ExceptionInfo EndedWithoutResult(const std::string& who, int wait_status,
                                 KillReason kill, absl::Duration timeout,
                                 absl::Duration silent_timeout,
                                 const std::string& hang_trace,
                                 const std::string& crash_trace,
                                 bool is_command) {
  if (kill == KillReason::kTimeout) {
    return {
        std::string(kProcessTimeout),
        absl::StrCat(who, " timed out after ", absl::FormatDuration(timeout)),
        hang_trace, ""};
  }
  if (kill == KillReason::kSilentTimeout) {
    return {std::string(kProcessSilentTimeout),
            absl::StrCat(who, " had no output for ",
                         absl::FormatDuration(silent_timeout)),
            hang_trace, ""};
  }
  if (WIFSIGNALED(wait_status)) {
    const int signo = WTERMSIG(wait_status);
    return {std::string(kProcessUnexpectedExit),
            absl::StrCat(who, " was killed by signal ", signo, " (",
                         SignalName(signo), ")"),
            crash_trace, ""};
  }
  return {std::string(kProcessUnexpectedExit),
          absl::StrCat(who,
                       is_command ? " exited with code "
                                  : " exited unexpectedly with code ",
                       WEXITSTATUS(wait_status)),
          "", ""};
}

void KillSequence::Start(const Child& child, bool dump_stack_first,
                         absl::Time now) {
  if (started()) return;
  if (dump_stack_first) {
    child.SignalMainThread(kDumpStackSignal);
    stage_ = Stage::kDump;
    next_ = now + kDumpGrace;
  } else {
    Terminate(child, now);
  }
}

void KillSequence::Advance(const Child& child, absl::Time now) {
  if (now < next_) return;
  if (stage_ == Stage::kDump) {
    Terminate(child, now);
  } else if (stage_ == Stage::kTerm) {
    child.SignalGroup(SIGKILL);
    stage_ = Stage::kKill;
    next_ = absl::InfiniteFuture();
  }
}

void KillSequence::Terminate(const Child& child, absl::Time now) {
  child.SignalGroup(SIGTERM);
  stage_ = Stage::kTerm;
  next_ = now + kKillGrace;
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

void AppendFailureRecord(std::string type, std::string message,
                         std::string traceback, std::string* out) {
  AppendRecord(RecordKind::kFailure,
               Encode(std::make_tuple(std::move(type), std::move(message),
                                      std::move(traceback))),
               out);
}

void AppendOutputLostRecord(int error, std::string* out) {
  AppendFailureRecord(
      std::string(kOutputLost),
      absl::StrCat("could not write the step's output: ", ::strerror(error)),
      "", out);
}

int FlushOutput() {
  std::cout.flush();
  std::cerr.flush();
  int error = 0;
  for (FILE* stream : {stdout, stderr}) {
    errno = 0;
    if ((std::fflush(stream) != 0 || std::ferror(stream)) && error == 0) {
      error = errno;
      if (error == 0) {
        // An earlier write failed and stdio kept no errno: ask the file. A
        // byte past the stream's position is never replayed (ends are
        // positions), so the probe leaves the output as it was.
        const int fd = ::fileno(stream);
        const off_t position = ::lseek(fd, 0, SEEK_CUR);
        const char probe = '\n';
        error = position >= 0 && ::pwrite(fd, &probe, 1, position) == 1 ? EIO
                                                                        : errno;
      }
    }
    // Reported once: a worker's next input starts with clean streams.
    std::clearerr(stream);
  }
  return error;
}

int RunBody(const std::function<absl::StatusOr<std::string>()>& body,
            bool keep_value, std::string* record) {
  std::string value;
  ExceptionInfo error;
  const bool ok = CallBody(body, &value, &error);
  // Output the step printed but could not deliver (a full disk, a file size
  // limit) fails the step with the reason.
  if (const int lost = FlushOutput(); lost != 0) {
    AppendOutputLostRecord(lost, record);
    return 1;
  }
  if (!ok) {
    AppendFailureRecord(std::move(error.type), std::move(error.message),
                        std::move(error.traceback), record);
    return 1;
  }
  AppendRecord(RecordKind::kValue, keep_value ? value : "", record);
  return 0;
}

int RunBodyAndReport(const std::function<absl::StatusOr<std::string>()>& body,
                     int result_fd, bool keep_value) {
  std::string record;
  const int code = RunBody(body, keep_value, &record);
  return WriteFully(result_fd, record.data(), record.size()) ? code
                                                             : kExitSetupFailed;
}

absl::StatusOr<Child> ForkChild(
    const std::function<absl::StatusOr<std::string>()>& body, const ChildIo& io,
    bool keep_value) {
  return ForkProcess(
      [&body, &io, keep_value] {
        return RunBodyAndReport(body, io.result_fd, keep_value);
      },
      io);
}

absl::StatusOr<Child> ForkProcess(absl::FunctionRef<int()> child_main,
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

namespace {

// Finds what execvp would run for `file`: itself if it has a slash, else the
// first executable regular file of that name in $PATH.
absl::StatusOr<std::string> FindProgram(const std::string& file) {
  auto executable = [](const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
  };
  if (file.find('/') != std::string::npos) {
    if (executable(file)) return file;
    return absl::NotFoundError(
        absl::StrCat("cannot execute '", file,
                     "': ", ::strerror(errno == 0 ? EACCES : errno)));
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(
           path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin", ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", file);
    if (executable(candidate)) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat("cannot execute '", file, "': not found in PATH"));
}

// What FindProgram found, by $PATH and name: a tool that runs the same few
// programs thousands of times stats each $PATH entry once, not every time.
// An entry that stops working is dropped by SpawnChild.
absl::Mutex g_program_cache_mutex;
std::map<std::string, std::string>& ProgramCache()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_program_cache_mutex) {
  static auto* cache = new std::map<std::string, std::string>();
  return *cache;
}

std::string ProgramCacheKey(const std::string& file) {
  const char* path = std::getenv("PATH");
  return absl::StrCat(path != nullptr ? path : "", std::string(1, '\0'), file);
}

absl::StatusOr<std::string> FindProgramCached(const std::string& file) {
  if (file.find('/') != std::string::npos) return FindProgram(file);
  const std::string key = ProgramCacheKey(file);
  {
    absl::MutexLock lock(&g_program_cache_mutex);
    auto it = ProgramCache().find(key);
    if (it != ProgramCache().end()) return it->second;
  }
  absl::StatusOr<std::string> found = FindProgram(file);
  if (found.ok()) {
    absl::MutexLock lock(&g_program_cache_mutex);
    if (ProgramCache().size() > 1024) ProgramCache().clear();
    ProgramCache()[key] = *found;
  }
  return found;
}

void ForgetProgram(const std::string& file) {
  absl::MutexLock lock(&g_program_cache_mutex);
  ProgramCache().erase(ProgramCacheKey(file));
}

struct SpawnRequest {
  const char* path;
  char* const* argv;
  const ChildIo* io;
  pid_t parent;
  int exec_errno;  // written by the child (shared memory) if execve fails
};

// The child of SpawnChild: runs on its own small stack in the parent's memory
// (CLONE_VM), with every signal blocked, until execve. Async-signal-safe.
int SpawnTrampoline(void* arg) {
  auto* request = static_cast<SpawnRequest*>(arg);
  // Handlers are the parent's code; the child must not run them.
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  const sigset_t* reset = request->io->signals_to_reset;
  for (int signo = 1; signo < NSIG; ++signo) {
    if (signo == SIGKILL || signo == SIGSTOP) continue;
    if (reset == nullptr || sigismember(reset, signo) == 1) {
      ::sigaction(signo, &dfl, nullptr);
    }
  }
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != request->parent) ::_exit(kExitSetupFailed);
  RedirectFd(request->io->stdin_fd, STDIN_FILENO);
  RedirectFd(request->io->stdout_fd, STDOUT_FILENO);
  RedirectFd(request->io->stderr_fd, STDERR_FILENO);
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
  ::execve(request->path, request->argv, environ);
  request->exec_errno = errno;
  ::_exit(127);
}

}  // namespace

namespace {
absl::StatusOr<Child> SpawnOnce(const std::vector<std::string>& argv,
                                const ChildIo& io);
}  // namespace

absl::StatusOr<Child> SpawnChild(const std::vector<std::string>& argv,
                                 const ChildIo& io) {
  if (argv.empty()) return absl::InvalidArgumentError("empty command");
  absl::StatusOr<Child> child = SpawnOnce(argv, io);
  if (absl::IsNotFound(child.status()) &&
      argv[0].find('/') == std::string::npos) {
    // The cached location may be stale (the program moved): look again.
    ForgetProgram(argv[0]);
    child = SpawnOnce(argv, io);
  }
  return child;
}

namespace {

absl::StatusOr<Child> SpawnOnce(const std::vector<std::string>& argv,
                                const ChildIo& io) {
  absl::StatusOr<std::string> path = FindProgramCached(argv[0]);
  if (!path.ok()) return path.status();
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);

  // Like glibc's posix_spawn: clone(CLONE_VM | CLONE_VFORK) onto a small
  // stack, so nothing of the caller's memory is copied, and the caller is
  // suspended only until the child has exec'd. Unlike posix_spawn, the child
  // can set PR_SET_PDEATHSIG before exec, so commands die with the caller.
  constexpr size_t kStackSize = 64 * 1024;
  void* stack = ::mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return StartError(errno, "mmap spawn stack");
  SpawnRequest request = {path->c_str(), args.data(), &io, ::getpid(), 0};
  sigset_t all, saved;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &saved);
  const pid_t pid =
      ::clone(SpawnTrampoline, static_cast<char*>(stack) + kStackSize,
              CLONE_VM | CLONE_VFORK | SIGCHLD, &request);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  ::munmap(stack, kStackSize);
  if (pid < 0)
    return StartError(clone_errno, absl::StrCat("spawn '", argv[0], "'"));
  if (request.exec_errno != 0) {
    ::waitpid(pid, nullptr, 0);
    if (request.exec_errno == ENOENT || request.exec_errno == EACCES ||
        request.exec_errno == ENOEXEC) {
      return absl::NotFoundError(absl::StrCat(
          "cannot execute '", argv[0], "': ", ::strerror(request.exec_errno)));
    }
    return StartError(request.exec_errno,
                      absl::StrCat("execve '", argv[0], "'"));
  }
  absl::StatusOr<UniqueFd> pidfd = OpenPidfd(pid);
  if (!pidfd.ok()) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return pidfd.status();
  }
  return Child(pid, *std::move(pidfd));
}

}  // namespace

void ResetStateInChild() { InterruptScope::ForgetInChild(); }

}  // namespace internal
}  // namespace parallel
