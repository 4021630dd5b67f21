#include "parallel/internal/process_exit.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace parallel {
namespace internal {
namespace {

ProcessExit RunAndWait(void (*child)()) {
  const pid_t pid = fork();
  if (pid == 0) {
    child();
    _exit(0);
  }
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return ProcessExit::FromWaitStatus(status);
}

TEST(ProcessExit, ExitCodeFromRealProcess) {
  const ProcessExit exit = RunAndWait([] { _exit(3); });
  EXPECT_TRUE(exit.exited());
  EXPECT_EQ(exit.exit_code(), 3);
  EXPECT_EQ(exit.signal(), 0);
  EXPECT_FALSE(exit.success());
  EXPECT_EQ(exit.ToString(), "exited with code 3");
  EXPECT_EQ(exit, ProcessExit::Exited(3));
}

TEST(ProcessExit, SignalFromRealProcess) {
  const ProcessExit exit = RunAndWait([] {
    signal(SIGTERM, SIG_DFL);
    raise(SIGTERM);
  });
  EXPECT_TRUE(exit.killed());
  EXPECT_EQ(exit.signal(), SIGTERM);
  EXPECT_EQ(exit.exit_code(), -1);
  EXPECT_EQ(exit.ToString(), "was killed by signal 15 (SIGTERM)");
}

TEST(ProcessExit, FromSiginfoMatchesWaitStatus) {
  const pid_t pid = fork();
  if (pid == 0) _exit(7);
  siginfo_t info = {};
  ASSERT_EQ(waitid(P_PID, pid, &info, WEXITED), 0);
  EXPECT_EQ(ProcessExit::FromSiginfo(info), ProcessExit::Exited(7));
  info.si_code = CLD_DUMPED;
  info.si_status = SIGSEGV;
  EXPECT_EQ(ProcessExit::FromSiginfo(info).ToString(),
            "was killed by signal 11 (SIGSEGV), core dumped");
}

TEST(ProcessExit, LostIsNeverSuccess) {
  EXPECT_FALSE(ProcessExit::Lost().success());
  EXPECT_TRUE(ProcessExit::Lost().lost());
  EXPECT_TRUE(ProcessExit::Exited(0).success());
}

TEST(SignalName, NamesAndNumbers) {
  EXPECT_EQ(SignalName(SIGKILL), "SIGKILL");
  EXPECT_EQ(SignalName(99), "signal 99");
}

}  // namespace
}  // namespace internal
}  // namespace parallel
