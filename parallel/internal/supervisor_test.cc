#include "parallel/internal/supervisor.h"

#include <fcntl.h>
#include <signal.h>
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

}  // namespace
}  // namespace internal
}  // namespace parallel
