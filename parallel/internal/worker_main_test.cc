// The worker's side of the pool protocol (worker_main.h), driven by hand:
// this test plays the parent, so it decides exactly when the worker's
// output is read.

#include "parallel/internal/worker_main.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <tuple>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "parallel/codec.h"
#include "parallel/internal/capture.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/record.h"

namespace parallel {
namespace internal {
namespace {

// Reads records from the worker until one of `kind` arrives.
Record Await(int socket, RecordKind kind, std::string* inbox) {
  while (true) {
    absl::string_view view(*inbox);
    Record record;
    absl::StatusOr<bool> taken = TakeRecord(&view, &record);
    if (taken.ok() && *taken) {
      inbox->erase(0, inbox->size() - view.size());
      if (record.kind == kind) return record;
      continue;
    }
    char buffer[4096];
    const ssize_t n = read(socket, buffer, sizeof(buffer));
    if (n <= 0) return Record{RecordKind::kCrash, "worker gone"};
    inbox->append(buffer, n);
  }
}

// The input ran on lane 0 and its output is still in the lane's pipe when
// kFinish (onexit's pipes, also sent as "lane 0") arrives: the worker must
// say the input's pipe is not empty, so that the parent reads it. It once
// looked at onexit's fresh pipe instead, and the parent skipped the read:
// the input's output was lost.
TEST(WorkerMain, KDoneOfTheInputBeforeOnexitLooksAtItsOwnPipe) {
  int sockets[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
  UniqueFd lane_r, lane_w, onexit_r, onexit_w, go_r, go_w;
  ASSERT_TRUE(MakeCapturePipe(&lane_r, &lane_w).ok());
  ASSERT_TRUE(MakeCapturePipe(&onexit_r, &onexit_w).ok());
  ASSERT_TRUE(MakeCapturePipe(&go_r, &go_w).ok());
  const int go = go_r.get();
  const pid_t worker = fork();
  ASSERT_GE(worker, 0);
  if (worker == 0) {
    close(sockets[0]);
    TaskBody task = [go](absl::string_view) -> absl::StatusOr<std::string> {
      if (write(STDOUT_FILENO, "kept\n", 5) != 5) _exit(5);
      char byte;
      while (read(go, &byte, 1) < 0) {
      }  // until the test has sent kFinish
      return std::string();
    };
    std::function<void()> onexit;
    WorkerSpec spec;
    spec.task = &task;
    spec.onexit = &onexit;
    _exit(WorkerMain(sockets[1], spec));
  }
  close(sockets[1]);
  std::string frame;
  AppendRecord(RecordKind::kInput,
               Encode(std::make_tuple(uint64_t{7}, uint32_t{0}, true,
                                      uint64_t{0}, std::string(), kNoClaim)),
               &frame);
  int fds[1] = {lane_w.get()};
  ASSERT_EQ(SendFully(sockets[0], frame.data(), frame.size(), fds, 1), 0);
  std::string inbox;
  ASSERT_EQ(Await(sockets[0], RecordKind::kStarted, &inbox).kind,
            RecordKind::kStarted);
  frame.clear();
  AppendRecord(RecordKind::kFinish, "", &frame);
  fds[0] = onexit_w.get();
  ASSERT_EQ(SendFully(sockets[0], frame.data(), frame.size(), fds, 1), 0);
  usleep(50000);  // kFinish is in the worker's socket before the task ends
  ASSERT_EQ(write(go_w.get(), "x", 1), 1);
  const Record done = Await(sockets[0], RecordKind::kDone, &inbox);
  std::tuple<uint64_t, bool, bool> fields;
  ASSERT_TRUE(DecodeInto(done.payload, &fields).ok());
  EXPECT_EQ(std::get<0>(fields), 7u);
  EXPECT_FALSE(std::get<2>(fields)) << "the input's pipe holds 'kept\\n'";
  char bytes[16] = {};
  EXPECT_EQ(read(lane_r.get(), bytes, sizeof(bytes)), 5);
  EXPECT_STREQ(bytes, "kept\n");
  close(sockets[0]);
  int status = 0;
  ASSERT_EQ(waitpid(worker, &status, 0), worker);
}

}  // namespace
}  // namespace internal
}  // namespace parallel
