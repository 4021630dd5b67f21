// How a process ended, as a value: exited with a code, killed by a signal
// (with or without a core dump), or unknown because its status was taken by
// someone else. Built from waitid()'s siginfo or a wait status in one place,
// so no caller decodes a raw status by hand. In the spirit of folly's
// ProcessReturnCode.
//
//   ProcessExit exit = ProcessExit::FromWaitStatus(status);
//   if (!exit.success()) std::cerr << "make " << exit.ToString() << "\n";
//   // "make exited with code 2", "make was killed by signal 11 (SIGSEGV)"
//
// Thread-safety: a plain value.

#ifndef PARALLEL_INTERNAL_PROCESS_EXIT_H_
#define PARALLEL_INTERNAL_PROCESS_EXIT_H_

#include <signal.h>

#include <string>

namespace parallel {
namespace internal {

// "SIGSEGV" for 11, "signal 99" for a number without a name.
std::string SignalName(int signo);

class ProcessExit {
 public:
  enum class State {
    kExited,  // exit_code() is valid
    kKilled,  // signal() is valid; core_dumped() says whether it dumped core
    kLost,    // the status was reaped by another waiter (waitpid(-1) in a
              // SIGCHLD handler or another thread); nothing is known
  };

  static ProcessExit Exited(int code) {
    return ProcessExit(State::kExited, code, 0, false);
  }
  static ProcessExit Killed(int signo, bool core_dumped = false) {
    return ProcessExit(State::kKilled, -1, signo, core_dumped);
  }
  static ProcessExit Lost() { return ProcessExit(State::kLost, -1, 0, false); }
  // From a wait status (waitpid) of a process that ended.
  static ProcessExit FromWaitStatus(int status);
  // From waitid()'s siginfo of a process that ended (CLD_EXITED, CLD_KILLED,
  // CLD_DUMPED).
  static ProcessExit FromSiginfo(const siginfo_t& info);

  State state() const { return state_; }
  bool exited() const { return state_ == State::kExited; }
  bool killed() const { return state_ == State::kKilled; }
  bool lost() const { return state_ == State::kLost; }
  // The exit code, or -1 unless exited().
  int exit_code() const { return exit_code_; }
  // The signal, or 0 unless killed().
  int signal() const { return signal_; }
  bool core_dumped() const { return core_dumped_; }
  // Exited with code 0.
  bool success() const { return exited() && exit_code_ == 0; }

  // "exited with code 3", "was killed by signal 11 (SIGSEGV)" (+ ", core
  // dumped"), "ended with its exit status lost".
  std::string ToString() const;

  friend bool operator==(const ProcessExit& a, const ProcessExit& b) {
    return a.state_ == b.state_ && a.exit_code_ == b.exit_code_ &&
           a.signal_ == b.signal_ && a.core_dumped_ == b.core_dumped_;
  }
  friend bool operator!=(const ProcessExit& a, const ProcessExit& b) {
    return !(a == b);
  }

 private:
  ProcessExit(State state, int code, int signo, bool core)
      : state_(state), exit_code_(code), signal_(signo), core_dumped_(core) {}

  State state_;
  int exit_code_;
  int signal_;
  bool core_dumped_;
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_PROCESS_EXIT_H_
