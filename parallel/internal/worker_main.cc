#include "parallel/internal/worker_main.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
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
  enum class Got { kRecord, kNotYet, kEnd };
  // The next record. kEnd: the parent is gone or sent garbage. kNotYet only
  // when !wait and no whole record is there yet.
  Got Next(Record* record, bool wait = true) {
    while (true) {
      absl::string_view view(inbox_);
      absl::StatusOr<bool> taken = TakeRecord(&view, record);
      if (!taken.ok()) return Got::kEnd;
      if (*taken) {
        inbox_.erase(0, inbox_.size() - view.size());
        return Got::kRecord;
      }
      char buffer[1 << 16];
      char control[CMSG_SPACE(sizeof(int) * 4)];
      iovec iov = {buffer, sizeof(buffer)};
      msghdr message = {};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      const int flags = MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT);
      const ssize_t n =
          RetryOnEintr([&] { return ::recvmsg(socket_, &message, flags); });
      if (n < 0 && errno == EAGAIN && !wait) return Got::kNotYet;
      if (n <= 0) return Got::kEnd;
      for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr;
           c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds_.push_back(AboveStdio(fd));
        }
      }
      inbox_.append(buffer, n);
    }
  }
  // A task that closed fds 1 and 2 leaves their numbers free, and a pipe
  // received then would take them: the next RedirectOutput would close it
  // under its lane (another input's output would go into it, and its own
  // end look empty). So received descriptors live above 2.
  static int AboveStdio(int fd) {
    if (fd > STDERR_FILENO) return fd;
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    ::close(fd);
    return moved;  // -1: the input is refused as garbage (no pipe)
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

namespace {

// After a task: reaps what it left behind (the worker is a subreaper, so
// that includes orphaned grandchildren) and says whether any process it
// started still lives. Such a process may hold the input's pipes and write
// later: the parent then gives the worker fresh ones (worker_pool.h).
bool TaskLeftProcesses() {
  while (true) {
    siginfo_t info = {};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG) != 0) {
      return errno != ECHILD;  // ECHILD: no child at all, the common case
    }
    if (info.si_pid == 0) return true;  // children, none ended
  }
}

// Whether the lane's pipes hold no byte now. The parent's reads run while
// the task writes; when they have taken everything, the parent need not
// look again after kDone.
bool LaneEmpty(const int* pipes) {
  for (int i = 0; i < 2; ++i) {
    int queued = 0;
    if (pipes[i] >= 0 && (::ioctl(pipes[i], FIONREAD, &queued) != 0 ||
                          queued != 0)) {
      return false;
    }
  }
  return true;
}

}  // namespace

namespace {

// One worker's loop (protocol in worker_main.h).
class Worker {
 public:
  Worker(int socket, const WorkerSpec& spec)
      : channel_(socket),
        spec_(spec),
        combine_stderr_(spec.combine_stderr),
        dev_null_(::open("/dev/null", O_WRONLY | O_CLOEXEC)) {
    // Orphans of a task's processes become the worker's children, so that
    // TaskLeftProcesses() sees them.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    for (int* lane : lanes_) lane[0] = lane[1] = -1;
  }

  int Run();

 private:
  // The unit that ended and has no kDone yet. Its kDone waits until fds 1
  // and 2 point elsewhere, so that its lane's "empty" holds for good: a
  // thread the task left can no longer add bytes to it.
  struct Ended {
    uint64_t id;
    bool left_processes;
    const int* pipes;
  };

  // Takes the unit's lane (and its pipes if new), points fds 1 and 2 at it
  // and queues kStarted. Returns the lane's pipes, or nullptr if the record
  // is garbage.
  // *skipped: the input was withdrawn (claims.h): it must not run.
  int* Begin(const Record& record, uint64_t* id, uint64_t* entry,
             std::string* args, bool* skipped);
  // Runs the task (or onexit), its value or failure into the outbox.
  void RunUnit(uint64_t id, uint64_t entry, const std::string& args);
  // The unit is the worker's last (onexit, one-shot, failed initializer):
  // its kDone (then kInitFailed if so) goes out.
  void SendLast();
  // Queues the ended unit's kDone, if any.
  void Conclude();
  // The parent sent garbage: what it is owed still goes, then exit 3.
  int Corrupt();

  WorkerChannel channel_;
  const WorkerSpec& spec_;
  const bool combine_stderr_;
  bool initialized_ = false;
  bool initializer_failed_ = false;
  const int dev_null_;
  // The output pipes by lane: {stdout, stderr or -1}.
  int lanes_[kLanes][2];
  int onexit_pipes_[2] = {-1, -1};
  // What goes to the parent next: kStarted, then the value or failure and
  // kDone. When the next input is already here as one ends, its kStarted
  // goes out with the last one's kDone: one message, one wake-up of the
  // parent, per input.
  std::string outbox_;
  std::optional<Ended> ended_;
};

int Worker::Run() {
  Record record;
  WorkerChannel::Got got = channel_.Next(&record);
  while (got == WorkerChannel::Got::kRecord) {
    uint64_t id = kOnexitId;
    uint64_t entry = 0;
    std::string args;
    bool skipped = false;
    int* pipes = Begin(record, &id, &entry, &args, &skipped);
    if (pipes == nullptr) return Corrupt();
    if (!channel_.Send(outbox_)) return 0;
    outbox_.clear();
    if (!skipped) RunUnit(id, entry, args);
    // Every byte of the task is in its lane before kDone goes.
    std::fflush(stdout);
    std::fflush(stderr);
    ended_ = Ended{id, TaskLeftProcesses(), pipes};
    if (id == kOnexitId || spec_.one_shot || initializer_failed_) {
      SendLast();
      return 0;
    }
    got = channel_.Next(&record, /*wait=*/false);
    if (got == WorkerChannel::Got::kNotYet) {
      // Idle: what a thread the task left writes now reaches no input.
      // (While the next input runs, fd 1 is its lane, for every thread.)
      RedirectOutput(dev_null_, -1);
      Conclude();
      if (!channel_.Send(outbox_)) return 0;
      outbox_.clear();
      got = channel_.Next(&record);
    }
  }
  // The parent is gone (or sent garbage: it is killing us then anyway).
  RedirectOutput(dev_null_, -1);
  Conclude();
  if (!outbox_.empty()) channel_.Send(outbox_);
  return 0;
}

void Worker::SendLast() {
  RedirectOutput(dev_null_, -1);  // the parent sees the lane's pipes end
  Conclude();
  if (initializer_failed_) AppendRecord(RecordKind::kInitFailed, "", &outbox_);
  channel_.Send(outbox_);
}

int* Worker::Begin(const Record& record, uint64_t* id, uint64_t* entry,
                   std::string* args, bool* skipped) {
  uint32_t lane = 0;
  bool new_pipes = true;
  if (record.kind == RecordKind::kInput) {
    std::tuple<uint64_t, uint32_t, bool, uint64_t, std::string, uint32_t>
        input;
    if (!DecodeInto(record.payload, &input).ok()) return nullptr;
    uint32_t claim = kNoClaim;
    std::tie(*id, lane, new_pipes, *entry, *args, claim) = std::move(input);
    if (lane >= kLanes) return nullptr;
    if (claim != kNoClaim) {
      if (claim >= spec_.claim_count) return nullptr;
      *skipped = !ClaimStart(&spec_.claims[claim], *id);
    }
  } else if (record.kind != RecordKind::kFinish) {
    return nullptr;
  }
  // The parent never gives a lane whose input has no kDone yet, so this is
  // not the ended unit's lane. Onexit's pipes have a place of their own:
  // the ended input may be on lane 0, and its kDone must look at its own
  // pipe (it once looked at onexit's, said "empty", and the parent skipped
  // the read that would have taken the input's last bytes).
  int* pipes =
      record.kind == RecordKind::kFinish ? onexit_pipes_ : lanes_[lane];
  if (new_pipes) {
    for (int i = 0; i < 2; ++i) {
      if (pipes[i] >= 0) ::close(pipes[i]);
      pipes[i] = i == 0 || !combine_stderr_ ? channel_.TakeFd() : -1;
    }
    if (pipes[0] < 0) return nullptr;
  }
  RedirectOutput(pipes[0], pipes[1]);
  Conclude();
  if (*id == kOnexitId) {
    // Its pipes are its own: once onexit is done the parent sees them end.
    ::close(pipes[0]);
    if (pipes[1] >= 0) ::close(pipes[1]);
    pipes[0] = pipes[1] = -1;
  }
  if (!*skipped) AppendRecord(RecordKind::kStarted, Encode(*id), &outbox_);
  return pipes;
}

void Worker::RunUnit(uint64_t id, uint64_t entry, const std::string& args) {
  if (id != kOnexitId) {
    RunBody(
        [&]() -> absl::StatusOr<std::string> {
          if (!initialized_) {
            initialized_ = true;
            if (spec_.initializer != nullptr && *spec_.initializer) {
              initializer_failed_ = true;  // until it returns
              (*spec_.initializer)();
              initializer_failed_ = false;
            }
          }
          if (entry != 0) return reinterpret_cast<TaskEntry>(entry)(args);
          return (*spec_.task)(args);
        },
        spec_.keep_values, &outbox_);
    return;
  }
  RunBody(
      [this]() -> absl::StatusOr<std::string> {
        if (spec_.onexit != nullptr && *spec_.onexit) (*spec_.onexit)();
        return std::string();
      },
      false, &outbox_);
}

void Worker::Conclude() {
  if (!ended_) return;
  const bool empty = ended_->id != kOnexitId && LaneEmpty(ended_->pipes);
  AppendRecord(
      RecordKind::kDone,
      Encode(std::make_tuple(ended_->id, ended_->left_processes, empty)),
      &outbox_);
  ended_.reset();
}

int Worker::Corrupt() {
  RedirectOutput(dev_null_, -1);
  Conclude();
  if (!outbox_.empty()) channel_.Send(outbox_);
  return 3;
}

}  // namespace

int WorkerMain(int socket, const WorkerSpec& spec) {
  return Worker(socket, spec).Run();
}

namespace {

// The test seam (in_process.h): no workers; Submit() runs the input here,
// at once.
class InlinePool : public WorkerPool {
 public:
  InlinePool(TaskBody task, PoolConfig config)
      : task_(std::move(task)), config_(std::move(config)) {}

  size_t Submit(PoolInput input) override {
    const size_t index = report_.steps.size();
    StepReport& report = report_.steps.emplace_back();
    report.name = std::move(input.label);
    if (halted_ || finished_ ||
        (config_.may_start && !config_.may_start(index, nullptr))) {
      report.outcome = StepOutcome::kHalted;
    } else {
      const bool ok = RunStepInProcess(
          [&]() -> absl::StatusOr<std::string> {
            if (!initialized_) {
              initialized_ = true;
              if (config_.initializer) config_.initializer();
            }
            if (input.own_body) return input.own_body(input.args);
            if (input.entry != 0) {
              return reinterpret_cast<TaskEntry>(input.entry)(input.args);
            }
            return task_(input.args);
          },
          config_.keep_values, &report);
      if (!ok && config_.halt_on_error) halted_ = true;
    }
    if (config_.on_done) config_.on_done(index, report);
    return index;
  }

  void Turn(int, absl::Time, WaitHooks*) override {}
  bool SendNow() override { return true; }  // Submit() ran it
  void Cancel(size_t) override {}  // every input ended in Submit()
  size_t unfinished() const override { return 0; }
  int interrupt_signal() const override { return 0; }

  RunReport& Finish() override {
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
  bool initialized_ = false;
  bool halted_ = false;
  bool finished_ = false;
};

}  // namespace

std::unique_ptr<WorkerPool> MakeInlinePool(TaskBody task, PoolConfig config) {
  return std::make_unique<InlinePool>(std::move(task), std::move(config));
}

}  // namespace internal
}  // namespace parallel
