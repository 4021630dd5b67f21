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

// An input closes fds 1 and 2; the next two inputs wait in the socket, and
// their pipes are received after that, in one message. Each input's output
// must land in its own pipe. (Received fds once took the freed numbers 1 and 2; pointing fd 2 at
// the first input's pipe then closed the second's, whose output went into
// the first's.)
TEST(WorkerMain, PipesReceivedAfterATaskClosedItsStdoutKeepTheirOutput) {
  int sockets[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
  UniqueFd closer_r, closer_w, b_r, b_w, c_r, c_w, go_r, go_w;
  ASSERT_TRUE(MakeCapturePipe(&closer_r, &closer_w).ok());
  ASSERT_TRUE(MakeCapturePipe(&go_r, &go_w).ok());
  const int go = go_r.get();
  ASSERT_TRUE(MakeCapturePipe(&b_r, &b_w).ok());
  ASSERT_TRUE(MakeCapturePipe(&c_r, &c_w).ok());
  const pid_t worker = fork();
  ASSERT_GE(worker, 0);
  if (worker == 0) {
    close(sockets[0]);
    TaskBody task = [go](absl::string_view args)
        -> absl::StatusOr<std::string> {
      if (args == "close") {
        close(STDOUT_FILENO);
        close(STDERR_FILENO);
        char byte;
        while (read(go, &byte, 1) < 0) {
        }  // until inputs 2 and 3 are in the socket
      } else if (write(STDOUT_FILENO, args.data(), args.size()) !=
                 static_cast<ssize_t>(args.size())) {
        _exit(5);
      }
      return std::string();
    };
    WorkerSpec spec;
    spec.task = &task;
    _exit(WorkerMain(sockets[1], spec));
  }
  close(sockets[1]);
  auto input = [](uint64_t id, uint32_t lane, const std::string& args,
                  std::string* frame) {
    AppendRecord(RecordKind::kInput,
                 Encode(std::make_tuple(id, lane, true, uint64_t{0}, args,
                                        kNoClaim)),
                 frame);
  };
  std::string frame;
  input(1, 0, "close", &frame);
  int fds[2] = {closer_w.get(), -1};
  ASSERT_EQ(SendFully(sockets[0], frame.data(), frame.size(), fds, 1), 0);
  std::string inbox;
  ASSERT_EQ(Await(sockets[0], RecordKind::kStarted, &inbox).kind,
            RecordKind::kStarted);
  frame.clear();
  input(2, 1, "two\n", &frame);
  input(3, 2, "three\n", &frame);
  fds[0] = b_w.get();
  fds[1] = c_w.get();
  ASSERT_EQ(SendFully(sockets[0], frame.data(), frame.size(), fds, 2), 0);
  ASSERT_EQ(write(go_w.get(), "x", 1), 1);
  for (uint64_t id : {1, 2, 3}) {
    const Record done = Await(sockets[0], RecordKind::kDone, &inbox);
    std::tuple<uint64_t, bool, bool> fields;
    ASSERT_TRUE(DecodeInto(done.payload, &fields).ok());
    EXPECT_EQ(std::get<0>(fields), id);
    // Input 1 wrote nothing; the others' bytes are still in their pipes.
    EXPECT_EQ(std::get<2>(fields), id == 1) << "input " << id;
  }
  close(sockets[0]);  // the worker ends, and with it its pipe ends
  int status = 0;
  ASSERT_EQ(waitpid(worker, &status, 0), worker);
  b_w.reset();
  c_w.reset();
  auto drain = [](int fd) {
    std::string got;
    char buffer[64];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof(buffer))) > 0) got.append(buffer, n);
    return got;
  };
  EXPECT_EQ(drain(b_r.get()), "two\n");
  EXPECT_EQ(drain(c_r.get()), "three\n");
}

}  // namespace
}  // namespace internal
}  // namespace parallel
