#include "parallel/internal/process_exit.h"

#include <string.h>
#include <sys/wait.h>

#include "absl/strings/str_cat.h"

namespace parallel {
namespace internal {

std::string SignalName(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev == nullptr ? absl::StrCat("signal ", signo)
                           : absl::StrCat("SIG", abbrev);
}

ProcessExit ProcessExit::FromWaitStatus(int status) {
  if (WIFEXITED(status)) return Exited(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return Killed(WTERMSIG(status), WCOREDUMP(status));
  return Lost();
}

ProcessExit ProcessExit::FromSiginfo(const siginfo_t& info) {
  switch (info.si_code) {
    case CLD_EXITED:
      return Exited(info.si_status);
    case CLD_KILLED:
      return Killed(info.si_status);
    case CLD_DUMPED:
      return Killed(info.si_status, /*core_dumped=*/true);
    default:
      return Lost();
  }
}

std::string ProcessExit::ToString() const {
  switch (state_) {
    case State::kExited:
      return absl::StrCat("exited with code ", exit_code_);
    case State::kKilled:
      return absl::StrCat("was killed by signal ", signal_, " (",
                          SignalName(signal_), ")",
                          core_dumped_ ? ", core dumped" : "");
    case State::kLost:
      break;
  }
  return "ended with its exit status lost (another waiter reaped it)";
}

}  // namespace internal
}  // namespace parallel
