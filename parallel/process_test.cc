// parallel::Process with real children: exit codes as Python's, output
// captured and written at Join, hygiene, kill on destruction, and the
// primitives of sync.h used from steps, executor tasks and Processes.

#include "parallel/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/executor.h"
#include "parallel/run_parallel_steps.h"
#include "parallel/sync.h"

namespace parallel {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// A memfd to hand a Process as its output_fd / error_fd.
class MemFile {
 public:
  MemFile() : fd_(::memfd_create("process-test", MFD_CLOEXEC)) {}
  ~MemFile() { ::close(fd_); }
  int fd() const { return fd_; }
  std::string Contents() const {
    std::string text(static_cast<size_t>(::lseek(fd_, 0, SEEK_END)), '\0');
    EXPECT_EQ(::pread(fd_, text.data(), text.size(), 0),
              static_cast<ssize_t>(text.size()));
    return text;
  }

 private:
  int fd_;
};

TEST(Process, ExitCodesAsPython) {
  Process ok([] {});
  Process threw([] { throw std::runtime_error("boom"); });
  Process exited([] { ::_exit(3); });
  Process killed([] { ::raise(SIGKILL); });
  for (Process* p : {&ok, &threw, &exited, &killed}) {
    EXPECT_FALSE(p->exitcode().has_value());
    EXPECT_EQ(p->pid(), 0);
    p->Start();
    EXPECT_GT(p->pid(), 0);
  }
  for (Process* p : {&ok, &threw, &exited, &killed}) EXPECT_TRUE(p->Join());
  EXPECT_EQ(ok.exitcode(), 0);
  EXPECT_EQ(threw.exitcode(), 1);
  EXPECT_EQ(exited.exitcode(), 3);
  EXPECT_EQ(killed.exitcode(), -SIGKILL);
  EXPECT_FALSE(ok.IsAlive());
}

TEST(Process, UncaughtExceptionIsWrittenToItsStderr) {
  MemFile err;
  Process::Options options;
  options.error_fd = err.fd();
  Process p([] { throw std::runtime_error("boom"); }, "thrower", options);
  p.Start();
  p.Join();
  EXPECT_THAT(err.Contents(),
              MatchesRegex("thrower \\(pid [0-9]+\\): uncaught "
                           "std::runtime_error: boom\n"));
}

TEST(Process, JoinWithTimeoutTerminateAndKill) {
  Event started;
  Process sleeper([&] {
    started.Set();
    ::pause();
  });
  EXPECT_FALSE(sleeper.IsAlive());
  sleeper.Start();
  ASSERT_TRUE(started.Wait(absl::Seconds(30)));
  EXPECT_TRUE(sleeper.IsAlive());
  EXPECT_FALSE(sleeper.Join(absl::Milliseconds(20)));
  EXPECT_FALSE(sleeper.exitcode().has_value());
  sleeper.Terminate();
  EXPECT_TRUE(sleeper.Join(absl::Seconds(30)));
  EXPECT_EQ(sleeper.exitcode(), -SIGTERM);
  sleeper.Terminate();  // after Join: nothing to signal
  sleeper.Kill();

  Process stubborn([] {
    ::signal(SIGTERM, SIG_IGN);
    ::pause();
  });
  stubborn.Start();
  stubborn.Kill();
  EXPECT_TRUE(stubborn.Join(absl::Seconds(30)));
  EXPECT_EQ(stubborn.exitcode(), -SIGKILL);
}

TEST(Process, ExitcodeIsKnownBeforeJoin) {
  Process quick([] { ::_exit(7); });
  quick.Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (quick.IsAlive() && absl::Now() < deadline) ::usleep(1000);
  EXPECT_EQ(quick.exitcode(), 7);  // not reaped yet
  EXPECT_TRUE(quick.Join());
  EXPECT_EQ(quick.exitcode(), 7);
}

TEST(Process, NamesAndMisuse) {
  Process unnamed([] {});
  EXPECT_THAT(unnamed.name(), MatchesRegex("Process-[0-9]+"));
  Process named([] {}, "worker");
  EXPECT_EQ(named.name(), "worker");
  EXPECT_THROW(named.Join(), std::logic_error);
  named.Start();
  EXPECT_THROW(named.Start(), std::logic_error);
  named.Join();
  EXPECT_TRUE(named.Join());  // again: at once
  Process empty(nullptr);
  EXPECT_THROW(empty.Start(), std::invalid_argument);
}

TEST(Process, OutputIsWrittenWhenJoined) {
  MemFile out;
  MemFile err;
  Process::Options options;
  options.output_fd = out.fd();
  options.error_fd = err.fd();
  Event written;
  Process p(
      [&] {
        std::printf("to stdout\n");
        std::fflush(stdout);
        std::fprintf(stderr, "to stderr\n");
        written.Set();
        ::pause();
      },
      "", options);
  p.Start();
  ASSERT_TRUE(written.Wait(absl::Seconds(30)));
  EXPECT_EQ(out.Contents(), "");  // captured, not yet written
  p.Kill();
  p.Join();
  EXPECT_EQ(out.Contents(), "to stdout\n");
  EXPECT_EQ(err.Contents(), "to stderr\n");
}

TEST(Process, UncapturedOutputStreams) {
  MemFile out;
  Process::Options options;
  options.capture_output = false;
  options.output_fd = out.fd();
  Event written;
  Process p(
      [&] {
        std::printf("live\n");
        std::fflush(stdout);
        written.Set();
        ::pause();
      },
      "", options);
  p.Start();
  ASSERT_TRUE(written.Wait(absl::Seconds(30)));
  EXPECT_EQ(out.Contents(), "live\n");  // before Join
  p.Kill();
  p.Join();
}

TEST(Process, ChildHygiene) {
  Value<int> stdin_bytes(-2);
  Value<bool> group_leader(false);
  Value<bool> sigint_default(false);
  struct sigaction ignore = {};
  ignore.sa_handler = [](int) {};
  struct sigaction old;
  ASSERT_EQ(::sigaction(SIGINT, &ignore, &old), 0);  // caught in the parent
  Process p([&] {
    char byte;
    stdin_bytes.Store(static_cast<int>(::read(0, &byte, 1)));  // /dev/null: 0
    group_leader.Store(::getpgrp() == ::getpid());
    struct sigaction now;
    ::sigaction(SIGINT, nullptr, &now);
    sigint_default.Store(now.sa_handler == SIG_DFL);
  });
  p.Start();
  p.Join();
  ::sigaction(SIGINT, &old, nullptr);
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(stdin_bytes.Load(), 0);
  EXPECT_TRUE(group_leader.Load());
  EXPECT_TRUE(sigint_default.Load());
}

// True while `pid` runs (a zombie does not count: whoever adopted it may
// not have reaped it yet).
bool Running(pid_t pid) {
  FILE* stat = std::fopen(absl::StrCat("/proc/", pid, "/stat").c_str(), "r");
  if (stat == nullptr) return false;
  char state = '?';
  const int matched = std::fscanf(stat, "%*d (%*[^)]) %c", &state);
  std::fclose(stat);
  return matched == 1 && state != 'Z' && state != 'X';
}

TEST(Process, DiesWithTheProcessThatStartedIt) {
  // Python's daemon=True, always: a parent killed without a chance to
  // clean up (SIGKILL) takes its Process with it (parent-death signal).
  Value<pid_t> child(0);
  Event started;
  const pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    Process p([] { ::pause(); });
    p.Start();
    child.Store(p.pid());
    started.Set();
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE(started.Wait(absl::Seconds(30)));
  const pid_t pid = child.Load();
  EXPECT_TRUE(Running(pid));
  ::kill(parent, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(parent, &status, 0), parent);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (Running(pid) && absl::Now() < deadline) ::usleep(1000);
  EXPECT_FALSE(Running(pid)) << "the Process outlived its parent";
}

TEST(Process, DestroyingARunningProcessKillsItsGroup) {
  Value<pid_t> grandchild(0);
  pid_t pid = 0;
  {
    Event ready;
    Process p([&] {
      const pid_t g = ::fork();
      if (g == 0) {
        ::pause();
        ::_exit(0);
      }
      grandchild.Store(g);
      ready.Set();
      ::pause();
    });
    p.Start();
    pid = p.pid();
    ASSERT_TRUE(ready.Wait(absl::Seconds(30)));
  }
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);  // killed and reaped
  // The grandchild got SIGKILL with the group; its parent (the Process
  // child) is gone, so init reaps it: wait until it is.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (::kill(grandchild.Load(), 0) == 0 && absl::Now() < deadline) {
    ::usleep(1000);
  }
  EXPECT_EQ(::kill(grandchild.Load(), 0), -1);
}

TEST(Process, StreamsResultsThroughAQueue) {
  Queue<int> results;
  Process producer([&] {
    for (int i = 0; i < 100; ++i) results.Put(i * i);
  });
  producer.Start();
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<int> value = results.Get(absl::Seconds(30));
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(*value, i * i);
  }
  EXPECT_TRUE(producer.Join());
  EXPECT_EQ(producer.exitcode(), 0);
}

// Made before the executor: its pre-forked workers inherit it.
Queue<int>* g_from_tasks = nullptr;
int PutTwice(int x) {
  g_from_tasks->Put(2 * x);
  return x;
}

TEST(SharedBySteps, LockQueueAndEventFromStepsAndExecutorTasks) {
  Lock lock;
  Value<int> inside(0);
  Value<int> most(0);
  Queue<std::string> progress;
  Event stop;
  std::vector<std::function<void()>> steps;
  for (int s = 0; s < 4; ++s) {
    steps.push_back([&, s] {
      for (int i = 0; i < 5; ++i) {
        std::lock_guard<Lock> hold(lock);
        const int now = inside.Update([](int n) { return n + 1; });
        most.Update([now](int m) { return std::max(m, now); });
        ::usleep(200);
        inside.Update([](int n) { return n - 1; });
      }
      progress.Put(absl::StrCat("step ", s, " done"));
      if (s == 3) stop.Set();
    });
  }
  RunParallelSteps(steps);
  EXPECT_EQ(most.Load(), 1);
  EXPECT_TRUE(stop.IsSet());
  std::vector<std::string> seen;
  for (int s = 0; s < 4; ++s) seen.push_back(*progress.Get(absl::Seconds(5)));
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::string>{"step 0 done", "step 1 done",
                                            "step 2 done", "step 3 done"}));

  Queue<int> from_tasks;
  g_from_tasks = &from_tasks;
  {
    ExecutorOptions options;
    options.max_workers = 2;
    ProcessPoolExecutor executor(options);
    std::vector<absl::StatusOr<int>> back =
        executor.Map(PutTwice, std::vector<int>{1, 2, 3});
    ASSERT_EQ(back.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(back[i].ok()) << back[i].status();
      EXPECT_EQ(*back[i], i + 1);
    }
  }
  int sum = 0;
  for (int i = 0; i < 3; ++i) sum += *from_tasks.Get(absl::Seconds(5));
  EXPECT_EQ(sum, 12);
  g_from_tasks = nullptr;
}

}  // namespace
}  // namespace parallel
