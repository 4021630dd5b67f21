#include "parallel/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <system_error>
#include <typeinfo>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/internal/demangle.h"
#include "parallel/internal/launch.h"
#include "parallel/internal/process_exit.h"

namespace parallel {
namespace {

std::string DefaultName() {
  static std::atomic<int> made{0};
  return absl::StrCat("Process-", ++made);
}

internal::UniqueFd MemFile(const char* name) {
  internal::UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
  if (!fd.valid()) {
    throw std::system_error(errno, std::generic_category(),
                            "Process: memfd_create");
  }
  return fd;
}

// Python's exitcode: the exit code, or -N for signal N.
int ExitCode(const internal::ProcessExit& exit) {
  if (exit.exited()) return exit.exit_code();
  if (exit.killed()) return -exit.signal();
  return 255;  // another waiter took the status (see Child::Reap)
}

// Copies all of `from` (a memfd) to `to`.
void CopyAll(int from, int to) {
  const off_t size = ::lseek(from, 0, SEEK_END);
  off_t offset = 0;
  while (offset < size) {
    const ssize_t n = internal::RetryOnEintr([&] {
      return ::sendfile(to, from, &offset, static_cast<size_t>(size - offset));
    });
    if (n > 0) continue;
    if (n < 0 && errno == EAGAIN) {
      internal::WaitWritable(to);
      continue;
    }
    break;  // the reader is gone or the target is full: nobody to tell
  }
}

}  // namespace

Process::Process(std::function<void()> target, std::string name)
    : Process(std::move(target), std::move(name), Options()) {}

Process::Process(std::function<void()> target, std::string name,
                 Options options)
    : target_(std::move(target)),
      name_(name.empty() ? DefaultName() : std::move(name)),
      options_(options) {}

Process::~Process() {
  if (!started_ || exitcode_.has_value()) return;
  if (!exitcode().has_value()) Kill();
  Join();
}

void Process::Start() {
  if (started_) {
    throw std::logic_error(absl::StrCat("Process ", name_, ": started twice"));
  }
  if (!target_) {
    throw std::invalid_argument(absl::StrCat("Process ", name_, ": no target"));
  }
  internal::UniqueFd dev_null(
      ::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!dev_null.valid()) {
    throw std::system_error(errno, std::generic_category(),
                            "Process: open /dev/null");
  }
  if (options_.capture_output) {
    stdout_file_ = MemFile("parallel-process-stdout");
    stderr_file_ = MemFile("parallel-process-stderr");
  }
  const sigset_t reset = internal::NonDefaultSignals();
  internal::ChildSetup setup;
  setup.stdin_fd = dev_null.get();
  // Not captured: straight to the caller's descriptors (-1: fd 1 / 2 as
  // inherited).
  setup.stdout_fd = options_.capture_output ? stdout_file_.get()
                    : options_.output_fd != 1 ? options_.output_fd
                                              : -1;
  setup.stderr_fd = options_.capture_output ? stderr_file_.get()
                    : options_.error_fd != 2 ? options_.error_fd
                                             : -1;
  setup.signals_to_reset = &reset;
  absl::StatusOr<internal::Child> child = internal::ForkProcess(
      [this]() -> int {
        internal::ResetStateInChild();
        try {
          target_();
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s (pid %d): uncaught %s: %s\n", name_.c_str(),
                       static_cast<int>(::getpid()),
                       internal::Demangle(typeid(e).name()).c_str(), e.what());
          return 1;
        } catch (...) {
          std::fprintf(stderr, "%s (pid %d): uncaught exception of unknown type\n",
                       name_.c_str(), static_cast<int>(::getpid()));
          return 1;
        }
        return 0;
      },
      setup);
  if (!child.ok()) {
    throw std::system_error(EAGAIN, std::generic_category(),
                            absl::StrCat("Process ", name_, ": ",
                                         child.status().message()));
  }
  child_ = *std::move(child);
  pid_ = child_.pid();
  started_ = true;
}

bool Process::Join(absl::Duration timeout) {
  if (!started_) {
    throw std::logic_error(absl::StrCat("Process ", name_, ": joined before Start()"));
  }
  if (exitcode_.has_value()) return true;
  const absl::Time deadline = timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + timeout;
  while (true) {
    int ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      const absl::Duration left = deadline - absl::Now();
      ms = left <= absl::ZeroDuration()
               ? 0
               : static_cast<int>(std::min<int64_t>(
                     absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
                     INT_MAX));
    }
    struct pollfd entry = {child_.pidfd(), POLLIN, 0};
    const int ready = ::poll(&entry, 1, ms);
    if (ready > 0) break;
    if (ready == 0) return false;
    if (errno != EINTR) {
      throw std::system_error(errno, std::generic_category(), "Process: poll");
    }
  }
  exitcode_ = ExitCode(child_.Reap());
  WriteOutput();
  return true;
}

void Process::WriteOutput() {
  if (stdout_file_.valid()) CopyAll(stdout_file_.get(), options_.output_fd);
  if (stderr_file_.valid()) CopyAll(stderr_file_.get(), options_.error_fd);
  stdout_file_.reset();
  stderr_file_.reset();
}

bool Process::IsAlive() const {
  return started_ && !exitcode().has_value();
}

void Process::Terminate() {
  if (child_.alive()) child_.Apply(internal::KillAction::kTerminate);
}

void Process::Kill() {
  if (child_.alive()) child_.Apply(internal::KillAction::kKill);
}

std::optional<int> Process::exitcode() const {
  if (exitcode_.has_value() || !child_.alive()) return exitcode_;
  // Ended but not reaped yet: read the status without consuming it.
  siginfo_t info = {};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info,
               WEXITED | WNOHANG | WNOWAIT) != 0 ||
      info.si_pid != pid_) {
    return std::nullopt;
  }
  return ExitCode(internal::ProcessExit::FromSiginfo(info));
}

}  // namespace parallel
