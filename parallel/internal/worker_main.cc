#include "parallel/internal/worker_main.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/codec.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/in_process.h"
#include "parallel/internal/record.h"
#include "parallel/internal/result.h"

namespace parallel {
namespace internal {
namespace {

// The worker's side of the socket: records in, descriptors alongside.
class WorkerChannel {
 public:
  explicit WorkerChannel(int socket) : socket_(socket) {}
  // The next record; false when the parent is gone or sent garbage.
  bool Next(Record* record) {
    while (true) {
      absl::string_view view(inbox_);
      absl::StatusOr<bool> taken = TakeRecord(&view, record);
      if (!taken.ok()) return false;
      if (*taken) {
        inbox_.erase(0, inbox_.size() - view.size());
        return true;
      }
      char buffer[1 << 16];
      char control[CMSG_SPACE(sizeof(int) * 4)];
      iovec iov = {buffer, sizeof(buffer)};
      msghdr message = {};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      const ssize_t n = RetryOnEintr(
          [&] { return ::recvmsg(socket_, &message, MSG_CMSG_CLOEXEC); });
      if (n <= 0) return false;
      for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr;
           c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds_.push_back(fd);
        }
      }
      inbox_.append(buffer, n);
    }
  }
  // The descriptors that came with the last frame, in order; -1 if missing.
  int TakeFd() {
    if (fds_.empty()) return -1;
    const int fd = fds_.front();
    fds_.pop_front();
    return fd;
  }
  bool Send(const std::string& bytes) {
    return SendFully(socket_, bytes.data(), bytes.size(), nullptr, 0) == 0;
  }

 private:
  const int socket_;
  std::string inbox_;
  std::deque<int> fds_;
};

// Points fds 1 and 2 at an input's pipe(s) (or back at /dev/null).
void RedirectOutput(int out, int err) {
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(out, STDOUT_FILENO);
  ::dup2(err >= 0 ? err : out, STDERR_FILENO);
}

}  // namespace

int WorkerMain(int socket, const TaskBody& task,
               const std::function<void()>& onexit, bool keep_values,
               bool combine_stderr) {
  WorkerChannel channel(socket);
  const int dev_null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  std::string outbox;
  Record record;
  while (channel.Next(&record)) {
    uint64_t id = kOnexitId;
    std::string args;
    if (record.kind == RecordKind::kInput) {
      std::tuple<uint64_t, std::string> input;
      if (!DecodeInto(record.payload, &input).ok()) return 3;
      id = std::get<0>(input);
      args = std::move(std::get<1>(input));
    } else if (record.kind != RecordKind::kFinish) {
      return 3;
    }
    const int out = channel.TakeFd();
    const int err = combine_stderr ? -1 : channel.TakeFd();
    if (out < 0) return 3;
    RedirectOutput(out, err);
    ::close(out);
    if (err >= 0) ::close(err);
    outbox.clear();
    AppendRecord(RecordKind::kStarted, Encode(id), &outbox);
    if (!channel.Send(outbox)) return 0;
    outbox.clear();
    if (id != kOnexitId) {
      RunBody([&task, &args] { return task(args); }, keep_values, &outbox);
    } else {
      RunBody(
          [&onexit]() -> absl::StatusOr<std::string> {
            if (onexit) onexit();
            return std::string();
          },
          false, &outbox);
    }
    // The pipe's last writer here goes: the parent sees its end.
    RedirectOutput(dev_null, -1);
    AppendRecord(RecordKind::kDone, Encode(id), &outbox);
    if (!channel.Send(outbox)) return 0;
    if (id == kOnexitId) return 0;
  }
  return 0;  // the parent is gone
}

namespace {

// The test seam (in_process.h): no workers; Put() runs the task here.
class InlinePool : public WorkerPool {
 public:
  InlinePool(TaskBody task, PoolConfig config)
      : task_(std::move(task)), config_(std::move(config)) {}

  void Put(std::string encoded_args, std::string label) override {
    StepReport& report = report_.steps.emplace_back();
    report.name = std::move(label);
    if (halted_) return;  // kHalted
    const bool ok =
        RunStepInProcess([this, &encoded_args] { return task_(encoded_args); },
                         config_.keep_values, &report);
    if (!ok && config_.halt_on_error) halted_ = true;
  }

  const RunReport& Finish() override {
    if (finished_) return report_;
    finished_ = true;
    if (!config_.onexit || halted_) return report_;
    StepReport onexit;
    onexit.name = "onexit";
    if (!RunStepInProcess(
            [this]() -> absl::StatusOr<std::string> {
              config_.onexit();
              return std::string();
            },
            false, &onexit)) {
      report_.steps.push_back(std::move(onexit));
    }
    return report_;
  }

  void Kill() override { halted_ = true; }

 private:
  TaskBody task_;
  const PoolConfig config_;
  RunReport report_;
  bool halted_ = false;
  bool finished_ = false;
};

}  // namespace

std::unique_ptr<WorkerPool> MakeInlinePool(TaskBody task, PoolConfig config) {
  return std::make_unique<InlinePool>(std::move(task), std::move(config));
}

}  // namespace internal
}  // namespace parallel
