#include "parallel/internal/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "parallel/internal/launch.h"

namespace parallel {
namespace internal {
namespace {

struct Ended {
  size_t slot;
  ProcessExit exit;
  KillReason why;
};

class FakeClient : public SupervisorClient {
 public:
  void OnEnded(size_t slot, const ProcessExit& exit, KillReason why) override {
    ended.push_back({slot, exit, why});
  }
  std::vector<Ended> ended;
};

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TEST(Supervisor, ReportsEndsWithTheirReasons) {
  UniqueFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
  Replayer replayer(ReplayOptions{null.get(), true, 2, TempDir(), false, {}});
  FakeClient client;
  Supervisor supervisor(&replayer, &client);
  const absl::Time now = absl::Now();
  ChildSetup setup;
  for (int code : {0, 4}) {
    const size_t slot = supervisor.AddSlot();
    absl::StatusOr<Child> child = ForkProcess([code] { return code; }, setup);
    ASSERT_TRUE(child.ok());
    supervisor.Launch(slot, *std::move(child), SlotOptions(), now);
  }
  const size_t sleeper = supervisor.AddSlot();
  absl::StatusOr<Child> child = ForkProcess(
      [] {
        pause();
        return 0;
      },
      setup);
  ASSERT_TRUE(child.ok());
  SlotOptions options;
  options.timeout = absl::Milliseconds(1);
  options.dump_stack_on_timeout = false;
  supervisor.Launch(sleeper, *std::move(child), options, now);
  supervisor.Arm(sleeper, Supervisor::kNoUnit, now);
  while (supervisor.active_count() > 0) supervisor.Turn();
  ASSERT_EQ(client.ended.size(), 3u);
  for (const Ended& end : client.ended) {
    if (end.slot == sleeper) {
      EXPECT_EQ(end.why, KillReason::kTimeout);
      EXPECT_EQ(end.exit, ProcessExit::Killed(SIGTERM));
    } else {
      EXPECT_EQ(end.why, KillReason::kNone);
      EXPECT_EQ(end.exit, ProcessExit::Exited(end.slot == 0 ? 0 : 4));
    }
  }
}

TEST(Supervisor, HaltOverridesATimeoutUnderWayNeverTheReverse) {
  UniqueFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
  Replayer replayer(ReplayOptions{null.get(), true, 2, TempDir(), false, {}});
  FakeClient client;
  Supervisor supervisor(&replayer, &client);
  const size_t slot = supervisor.AddSlot();
  absl::StatusOr<Child> child = ForkProcess(
      [] {
        pause();
        return 0;
      },
      ChildSetup());
  ASSERT_TRUE(child.ok());
  const absl::Time now = absl::Now();
  SlotOptions options;
  options.dump_stack_on_timeout = false;
  supervisor.Launch(slot, *std::move(child), options, now);
  supervisor.Kill(slot, KillReason::kTimeout, now);
  supervisor.Kill(slot, KillReason::kHalt, now);
  supervisor.Kill(slot, KillReason::kSilentTimeout, now);
  EXPECT_EQ(supervisor.kill_reason(slot), KillReason::kHalt);
  while (supervisor.active_count() > 0) supervisor.Turn();
  ASSERT_EQ(client.ended.size(), 1u);
  EXPECT_EQ(client.ended[0].why, KillReason::kHalt);
}

TEST(Supervisor, ExitStatusIsRightEvenWhenTheCallerIgnoresSigchld) {
  struct sigaction ignore = {}, saved;
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGCHLD, &ignore, &saved);
  {
    UniqueFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
    Replayer replayer(ReplayOptions{null.get(), true, 2, TempDir(), false, {}});
    FakeClient client;
    Supervisor supervisor(&replayer, &client);
    const size_t slot = supervisor.AddSlot();
    absl::StatusOr<Child> child = ForkProcess([] { return 3; }, ChildSetup());
    ASSERT_TRUE(child.ok());
    supervisor.Launch(slot, *std::move(child), SlotOptions(), absl::Now());
    while (supervisor.active_count() > 0) supervisor.Turn();
    ASSERT_EQ(client.ended.size(), 1u);
    EXPECT_EQ(client.ended[0].exit, ProcessExit::Exited(3));
  }
  struct sigaction after;
  sigaction(SIGCHLD, nullptr, &after);
  EXPECT_EQ(after.sa_handler, SIG_IGN);  // the caller's disposition is back
  sigaction(SIGCHLD, &saved, nullptr);
}

// The caller dies right after the fork returned, before the child was
// handed to the supervisor: the child's group (here a grandchild the child
// started at once) still dies with it, because the child registered the
// group with the watchdog itself. When the supervisor registered it at
// Launch, the grandchild outlived the caller.
TEST(Supervisor, AChildsGroupIsWatchedFromItsFirstInstruction) {
  int to_caller[2], to_test[2];
  ASSERT_EQ(pipe(to_caller), 0);
  ASSERT_EQ(pipe(to_test), 0);
  const pid_t caller = fork();
  ASSERT_GE(caller, 0);
  if (caller == 0) {
    UniqueFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
    Replayer replayer(ReplayOptions{null.get(), true, 2, TempDir(), false, {}});
    FakeClient client;
    Supervisor supervisor(&replayer, &client);
    ChildSetup setup;
    setup.watch_fd = supervisor.watch_fd();
    std::vector<int> own_fds;  // the watchdog's pipe among them
    supervisor.AppendFds(&own_fds);
    setup.fds_to_close = &own_fds;
    const int report = to_caller[1];
    absl::StatusOr<Child> child = ForkProcess(
        [report] {
          const pid_t grandchild = fork();
          if (grandchild == 0) {
            pause();
            _exit(0);
          }
          (void)!write(report, &grandchild, sizeof(grandchild));
          pause();
          return 0;
        },
        setup);
    pid_t grandchild = 0;
    if (!child.ok() ||
        read(to_caller[0], &grandchild, sizeof(grandchild)) !=
            sizeof(grandchild)) {
      _exit(1);
    }
    (void)!write(to_test[1], &grandchild, sizeof(grandchild));
    _exit(0);  // as if SIGKILLed: no Launch, no destructor, no goodbye
  }
  close(to_caller[0]);
  close(to_caller[1]);
  close(to_test[1]);
  pid_t grandchild = 0;
  ASSERT_EQ(read(to_test[0], &grandchild, sizeof(grandchild)),
            static_cast<ssize_t>(sizeof(grandchild)));
  close(to_test[0]);
  int status = 0;
  ASSERT_EQ(waitpid(caller, &status, 0), caller);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, grandchild, 0));
  if (pidfd < 0) return;  // already gone
  pollfd gone = {pidfd, POLLIN, 0};
  // The watchdog acts within milliseconds; 3 s for a loaded machine.
  const bool died = poll(&gone, 1, 3000) == 1;
  close(pidfd);
  if (!died) kill(grandchild, SIGKILL);
  EXPECT_TRUE(died) << "the grandchild outlived its caller";
}

}  // namespace
}  // namespace internal
}  // namespace parallel
