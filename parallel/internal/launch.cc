#include "parallel/internal/launch.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio_ext.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ext/stdio_sync_filebuf.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <typeinfo>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "parallel/internal/interrupt.h"
#include "parallel/internal/record.h"
#include "parallel/internal/stack.h"
#include "parallel/internal/watchdog.h"
#include "parallel/step_observer_internal.h"

extern char** environ;

namespace parallel {
namespace internal {
namespace {

// The exit code of a child whose preparation failed.
constexpr int kExitSetupFailed = 126;

// Which preparation call failed, and how.
struct SetupError {
  const char* call = nullptr;
  int error = 0;
};

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

absl::StatusOr<UniqueFd> OpenPidfd(pid_t pid) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return ErrnoStatus("pidfd_open");
  return UniqueFd(fd);
}

// Makes `from` the child's descriptor `to`. Async-signal-safe.
int Redirect(int from, int to) {
  if (from < 0) return 0;
  // dup2 onto itself would keep FD_CLOEXEC; clear it so exec keeps the fd.
  if (from == to) return ::fcntl(to, F_SETFD, 0);
  return ::dup2(from, to) == to ? 0 : -1;
}

// The one child-side preparation, for forks and spawns alike. Returns the
// first call that failed, or {nullptr, 0}. Async-signal-safe.
SetupError PrepareChild(const ChildSetup& setup, pid_t parent) {
  auto failed = [](const char* call) { return SetupError{call, errno}; };
  if (::setpgid(0, 0) != 0) return failed("setpgid");
  if (setup.foreground_tty_fd >= 0) {
    // A background group's tcsetpgrp raises SIGTTOU unless it is blocked.
    sigset_t ttou, saved;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    ::sigprocmask(SIG_BLOCK, &ttou, &saved);
    const int rc = ::tcsetpgrp(setup.foreground_tty_fd, ::getpid());
    ::sigprocmask(SIG_SETMASK, &saved, nullptr);
    if (rc != 0) return failed("tcsetpgrp");
  }
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return failed("prctl");
  // The parent may have died before prctl took effect.
  if (::getppid() != parent) return SetupError{"getppid", ESRCH};
  // From here the parent's death kills this process (PDEATHSIG) and, once
  // registered, its whole group (the watchdog): before any process of its own.
  WatchOwnGroup(setup.watch_fd);
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int signo = 1; signo < NSIG; ++signo) {
    if (signo == SIGKILL || signo == SIGSTOP) continue;
    // Signals glibc reserves for itself (32, 33) cannot be changed.
    if (signo >= 32 && signo < SIGRTMIN) continue;
    if (setup.signals_to_reset != nullptr &&
        sigismember(setup.signals_to_reset, signo) != 1) {
      continue;
    }
    if (::sigaction(signo, &dfl, nullptr) != 0) return failed("sigaction");
  }
  if (Redirect(setup.stdin_fd, STDIN_FILENO) != 0) return failed("dup2 stdin");
  if (Redirect(setup.stdout_fd, STDOUT_FILENO) != 0)
    return failed("dup2 stdout");
  if (Redirect(setup.stderr_fd, STDERR_FILENO) != 0)
    return failed("dup2 stderr");
  if (setup.fds_to_close != nullptr) {
    // EBADF is fine: the list may name a descriptor twice.
    for (int fd : *setup.fds_to_close) {
      if (fd > STDERR_FILENO && fd != setup.result_fd) ::close(fd);
    }
  }
  sigset_t empty;
  sigemptyset(&empty);
  if (::sigprocmask(SIG_SETMASK, &empty, nullptr) != 0)
    return failed("sigprocmask");
  return {};
}

// A kStartFailed record: errno (u32 LE) then the call's name. Async-signal-
// safe.
void ReportSetupError(int fd, const SetupError& error) {
  unsigned char payload[64] = {};
  for (int i = 0; i < 4; ++i) {
    payload[i] = static_cast<unsigned char>(
        static_cast<uint32_t>(error.error) >> (8 * i));
  }
  size_t size = 4;
  for (const char* p = error.call; *p != '\0' && size < sizeof(payload); ++p) {
    payload[size++] = static_cast<unsigned char>(*p);
  }
  if (fd >= 0) WriteRecord(fd, RecordKind::kStartFailed, payload, size);
}

// `stream`'s buffer if it writes straight through to a C stream (what
// sync_with_stdio(true), the default, gives std::cout and std::cerr), else
// null.
const std::streambuf* SyncedBuffer(const std::ostream& stream) {
  const std::streambuf* buffer = stream.rdbuf();
  return buffer != nullptr &&
                 typeid(*buffer) ==
                     typeid(__gnu_cxx::stdio_sync_filebuf<char>)
             ? buffer
             : nullptr;
}

// Taken as the program starts (this file includes <iostream>, so the
// standard streams exist by then), and inherited by every child.
const std::streambuf* const g_synced_cout = SyncedBuffer(std::cout);
const std::streambuf* const g_synced_cerr = SyncedBuffer(std::cerr);

}  // namespace

void FlushCppStreams() {
  if (g_synced_cout == nullptr || std::cout.rdbuf() != g_synced_cout) {
    std::cout.flush();
  }
  if (g_synced_cerr == nullptr || std::cerr.rdbuf() != g_synced_cerr) {
    std::cerr.flush();
  }
}

void TakeTerminalBack(int tty_fd) {
  if (tty_fd < 0) return;
  sigset_t ttou, saved;
  sigemptyset(&ttou);
  sigaddset(&ttou, SIGTTOU);
  ::pthread_sigmask(SIG_BLOCK, &ttou, &saved);
  (void)::tcsetpgrp(tty_fd, ::getpgrp());
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

sigset_t NonDefaultSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signo = 1; signo < NSIG; ++signo) {
    struct sigaction current;
    if (::sigaction(signo, nullptr, &current) != 0) continue;
    const bool ignored = (current.sa_flags & SA_SIGINFO) == 0 &&
                         current.sa_handler == SIG_IGN;
    // An ignored signal stays ignored in children (exec keeps SIG_IGN), as
    // make and sh leave it — except SIGPIPE and SIGCHLD, which would break
    // ordinary programs (`yes | head`, a child's own waitpid).
    if (ignored && signo != SIGPIPE && signo != SIGCHLD) continue;
    // A signal an interrupt scope may catch (now or once a run starts) has
    // the parent's handler in a forked child.
    if (current.sa_handler != SIG_DFL || (current.sa_flags & SA_SIGINFO) ||
        (current.sa_flags & SA_NOCLDWAIT) != 0 || MayBeCaught(signo) ||
        signo == SIGPIPE || signo == SIGCHLD) {
      sigaddset(&set, signo);
    }
  }
  return set;
}

absl::StatusOr<Child> ForkProcess(absl::FunctionRef<int()> child_main,
                                  const ChildSetup& setup) {
  // Load what the children's signal handlers need once, here, so that no
  // child has to (and no handler ever does).
  static const bool prepared = (PrepareChildHandlers(), true);
  (void)prepared;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return StartError(errno, "fork");
  if (pid == 0) {
    ResetStateInChild();
    if (const SetupError error = PrepareChild(setup, parent);
        error.call != nullptr) {
      ReportSetupError(setup.result_fd, error);
      ::_exit(kExitSetupFailed);
    }
    // Bytes the parent had buffered in stdio belong to the parent.
    __fpurge(stdout);
    __fpurge(stderr);
    InstallChildHandlers(setup.result_fd);
    SetNoteChannel(setup.result_fd);
    const int code = child_main();
    FlushCppStreams();
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

// Why `file` cannot be run, as a shell says it: NotFound (a shell's exit
// code 127) or PermissionDenied (126), the message "<file>: <reason>".
absl::Status CannotRun(const std::string& file, int error) {
  if (error == ENOENT) {
    return absl::NotFoundError(
        absl::StrCat(file, file.find('/') == std::string::npos
                               ? ": command not found"
                               : ": No such file or directory"));
  }
  return absl::PermissionDeniedError(
      absl::StrCat(file, ": ", ::strerror(error)));
}

// 0 if `path` is an executable regular file, else why not (ENOENT, EISDIR,
// EACCES, ...).
int Executable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno;
  if (S_ISDIR(st.st_mode)) return EISDIR;
  if (!S_ISREG(st.st_mode)) return EACCES;
  return ::access(path.c_str(), X_OK) == 0 ? 0 : errno;
}

// Finds what execvp would run for `file`: itself if it has a slash, else the
// first executable regular file of that name in $PATH. As a shell, a file of
// that name that cannot be executed is reported (126) only if no executable
// one follows it in $PATH.
absl::StatusOr<std::string> FindProgram(const std::string& file) {
  if (file.find('/') != std::string::npos) {
    const int error = Executable(file);
    if (error == 0) return file;
    return CannotRun(file, error);
  }
  const char* path = std::getenv("PATH");
  int first_error = ENOENT;
  for (absl::string_view dir : absl::StrSplit(
           path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin", ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", file);
    const int error = Executable(candidate);
    if (error == 0) return candidate;
    if (first_error == ENOENT && error != ENOENT && error != ENOTDIR) {
      first_error = error;
    }
  }
  return CannotRun(file, first_error);
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

constexpr char kShell[] = "/bin/sh";

struct SpawnRequest {
  const char* path;
  char* const* argv;
  // {"/bin/sh", path, argv[1], ...}: what runs a file execve refuses as
  // not a binary (ENOEXEC: a script without "#!"), as execvp, sh and make
  // do.
  char* const* sh_argv;
  char* const* envp;
  const ChildSetup* setup;
  pid_t parent;
  // Written by the child (shared memory) if it fails before or in execve.
  SetupError error;
};

// The child of SpawnChild: runs on its own small stack in the parent's memory
// (CLONE_VM), with every signal blocked, until execve. Async-signal-safe.
// Returns only if the child could not be prepared or exec'd (then
// request->error says why).
void RunSpawnChild(SpawnRequest* request) {
  // Handlers are the parent's code: reset before anything can unblock them.
  request->error = PrepareChild(*request->setup, request->parent);
  if (request->error.call != nullptr) return;
  ::execve(request->path, request->argv, request->envp);
  if (errno == ENOEXEC) ::execve(kShell, request->sh_argv, request->envp);
  request->error = {"execve", errno};
}

#if !defined(__SANITIZE_THREAD__)
int SpawnTrampoline(void* arg) {
  auto* request = static_cast<SpawnRequest*>(arg);
  RunSpawnChild(request);
  ::_exit(std::strcmp(request->error.call, "execve") == 0 ? 127
                                                         : kExitSetupFailed);
}
#else
// Under ThreadSanitizer: a CLONE_VM child would run TSan's interceptors on
// the parent's thread state (they share the TLS) and leave it corrupt — the
// parent then misses its own locks and reports races that are not there.
// So a plain fork, which TSan knows, with the error sent back through a
// close-on-exec pipe (EOF: the exec succeeded).
pid_t ForkSpawn(SpawnRequest* request) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    RunSpawnChild(request);
    (void)!::write(fds[1], &request->error, sizeof(request->error));
    ::_exit(std::strcmp(request->error.call, "execve") == 0 ? 127
                                                           : kExitSetupFailed);
  }
  const int fork_errno = errno;
  ::close(fds[1]);
  if (pid > 0) {
    SetupError error = {};
    if (RetryOnEintr([&] { return ::read(fds[0], &error, sizeof(error)); }) ==
        static_cast<ssize_t>(sizeof(error))) {
      request->error = error;
    }
  }
  ::close(fds[0]);
  errno = fork_errno;
  return pid;
}
#endif

absl::StatusOr<Child> SpawnOnce(const std::vector<std::string>& argv,
                                const ChildSetup& setup) {
  absl::StatusOr<std::string> path = FindProgramCached(argv[0]);
  if (!path.ok()) return path.status();
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> sh_args = {const_cast<char*>(kShell),
                                const_cast<char*>(path->c_str())};
  sh_args.insert(sh_args.end(), args.begin() + 1, args.end());
  // The environment: the caller's, with setup.extra_env over it.
  std::vector<char*> env;
  if (setup.extra_env != nullptr) {
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const absl::string_view name(*entry, std::strcspn(*entry, "="));
      const bool replaced = std::any_of(
          setup.extra_env->begin(), setup.extra_env->end(),
          [&](const std::string& extra) {
            return absl::StartsWith(extra, name) && extra.size() > name.size() &&
                   extra[name.size()] == '=';
          });
      if (!replaced) env.push_back(*entry);
    }
    for (const std::string& extra : *setup.extra_env) {
      env.push_back(const_cast<char*>(extra.c_str()));
    }
    env.push_back(nullptr);
  }

  // Like glibc's posix_spawn: clone(CLONE_VM | CLONE_VFORK) onto a small
  // stack, so nothing of the caller's memory is copied, and the caller is
  // suspended only until the child has exec'd.
  constexpr size_t kStackSize = 64 * 1024;
  void* stack = ::mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return StartError(errno, "mmap spawn stack");
  SpawnRequest request = {path->c_str(), args.data(), sh_args.data(),
                          env.empty() ? environ : env.data(), &setup,
                          ::getpid(), {}};
  sigset_t all, saved;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &saved);
#if defined(__SANITIZE_THREAD__)
  const pid_t pid = ForkSpawn(&request);
#else
  const pid_t pid =
      ::clone(SpawnTrampoline, static_cast<char*>(stack) + kStackSize,
              CLONE_VM | CLONE_VFORK | SIGCHLD, &request);
#endif
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  ::munmap(stack, kStackSize);
  if (pid < 0)
    return StartError(clone_errno, absl::StrCat("spawn '", argv[0], "'"));
  if (request.error.call != nullptr) {
    ::waitpid(pid, nullptr, 0);
    const int error = request.error.error;
    if (std::strcmp(request.error.call, "execve") != 0) {
      return absl::InternalError(absl::StrCat("preparing '", argv[0],
                                              "': ", request.error.call, ": ",
                                              ::strerror(error)));
    }
    if (error == ENOENT || error == EACCES || error == ENOEXEC) {
      return absl::NotFoundError(
          absl::StrCat("cannot execute '", argv[0], "': ", ::strerror(error)));
    }
    return StartError(error, absl::StrCat("execve '", argv[0], "'"));
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

absl::StatusOr<Child> SpawnChild(const std::vector<std::string>& argv,
                                 const ChildSetup& setup) {
  if (argv.empty()) return absl::InvalidArgumentError("empty command");
  absl::StatusOr<Child> child = SpawnOnce(argv, setup);
  if (absl::IsNotFound(child.status()) &&
      argv[0].find('/') == std::string::npos) {
    // The cached location may be stale (the program moved): look again.
    ForgetProgram(argv[0]);
    child = SpawnOnce(argv, setup);
  }
  return child;
}

void ResetStateInChild() { InterruptScope::ForgetInChild(); }

}  // namespace internal
}  // namespace parallel
