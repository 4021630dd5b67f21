#include "parallel/internal/child.h"

#include <signal.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "parallel/internal/launch.h"

namespace parallel {
namespace internal {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(KillSequence, DumpThenTermThenKillOnTheInjectedClock) {
  KillSequence killing;
  EXPECT_FALSE(killing.started());
  EXPECT_EQ(killing.next(), absl::InfiniteFuture());
  EXPECT_EQ(killing.Start(/*dump_stack_first=*/true, kT0),
            KillAction::kDumpStack);
  EXPECT_TRUE(killing.started());
  EXPECT_EQ(killing.next(), kT0 + kDumpGrace);
  // Not due yet: nothing happens.
  EXPECT_EQ(killing.Advance(kT0 + kDumpGrace - absl::Milliseconds(1)),
            KillAction::kNone);
  EXPECT_EQ(killing.Advance(kT0 + kDumpGrace), KillAction::kTerminate);
  EXPECT_EQ(killing.next(), kT0 + kDumpGrace + kKillGrace);
  EXPECT_EQ(killing.Advance(kT0 + kDumpGrace + kKillGrace), KillAction::kKill);
  EXPECT_EQ(killing.next(), absl::InfiniteFuture());
  EXPECT_EQ(killing.Advance(kT0 + absl::Hours(1)), KillAction::kNone);
}

TEST(KillSequence, WithoutDumpStartsWithSigterm) {
  KillSequence killing;
  EXPECT_EQ(killing.Start(false, kT0), KillAction::kTerminate);
  EXPECT_EQ(killing.next(), kT0 + kKillGrace);
  // A second Start does not restart the sequence.
  EXPECT_EQ(killing.Start(true, kT0 + absl::Seconds(1)), KillAction::kNone);
  EXPECT_EQ(killing.Advance(kT0 + kKillGrace), KillAction::kKill);
}

TEST(Child, ReapReportsExitAndKillsTheGroup) {
  ChildSetup setup;
  absl::StatusOr<Child> child = ForkProcess([] { return 5; }, setup);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_GT(child->pid(), 0);
  EXPECT_EQ(child->Reap(), ProcessExit::Exited(5));
  EXPECT_FALSE(child->alive());
}

// A child that waits until it is killed.
absl::StatusOr<Child> ForkSleeper() {
  return ForkProcess(
      [] {
        pause();
        return 0;
      },
      ChildSetup());
}

TEST(Child, ApplyKillEndsTheProcess) {
  absl::StatusOr<Child> child = ForkSleeper();
  ASSERT_TRUE(child.ok());
  child->Apply(KillAction::kKill);
  EXPECT_EQ(child->Reap(), ProcessExit::Killed(SIGKILL));
}

TEST(Child, DestructorKillsAndReaps) {
  pid_t pid = 0;
  {
    absl::StatusOr<Child> child = ForkSleeper();
    ASSERT_TRUE(child.ok());
    pid = child->pid();
  }
  // Reaped: the pid is no longer our child.
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

}  // namespace
}  // namespace internal
}  // namespace parallel
