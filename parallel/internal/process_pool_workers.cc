// The workers' side of the pool (process_pool.h): starting them, what they
// say, their end, their replacement and recycling.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "parallel/codec.h"
#include "parallel/internal/launch.h"
#include "parallel/internal/process_pool.h"

namespace parallel {
namespace internal {
namespace {

// The resident set of a process, from /proc; -1 if it cannot be read.
int64_t ResidentBytes(pid_t pid) {
  std::ifstream statm(absl::StrCat("/proc/", pid, "/statm"));
  int64_t size = 0;
  int64_t resident = 0;
  if (!(statm >> size >> resident)) return -1;
  return resident * ::sysconf(_SC_PAGESIZE);
}

}  // namespace

absl::Status ProcessPool::StartWorkers() {
  signals_to_reset_ = NonDefaultSignals();
  for (int i = 0; i < config_.processes; ++i) {
    workers_.emplace_back();
    supervisor_.AddSlot();
    if (absl::Status status = StartWorker(i); !status.ok()) return status;
  }
  return absl::OkStatus();
}

void ProcessPool::OwnFds(std::vector<int>* fds) const {
  supervisor_.AppendFds(fds);
  // A dead worker's socket is no client descriptor any more, but still open.
  for (const Worker& worker : workers_) {
    if (worker.socket.valid()) fds->push_back(worker.socket.get());
    for (const Lane& lane : worker.lanes) {
      if (lane.out.valid()) fds->push_back(lane.out.get());
      if (lane.err.valid()) fds->push_back(lane.err.get());
    }
  }
}

absl::Status ProcessPool::StartWorker(size_t slot, const TaskBody* own_body) {
  Worker& worker = workers_[slot];
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return ErrnoStatus("socketpair");
  }
  UniqueFd parent_end(sockets[0]);
  UniqueFd worker_end(sockets[1]);
  std::vector<int> own_fds = {parent_end.get()};
  OwnFds(&own_fds);
  ChildSetup setup;
  setup.watch_fd = supervisor_.watch_fd();
  setup.stdin_fd = supervisor_.dev_null();
  setup.stdout_fd = supervisor_.dev_null();
  setup.stderr_fd = supervisor_.dev_null();
  setup.result_fd = worker_end.get();
  setup.signals_to_reset = &signals_to_reset_;
  setup.fds_to_close = &own_fds;
  const int socket = worker_end.get();
  absl::StatusOr<Child> child = ForkProcess(
      [this, socket, own_body] {
        WorkerSpec spec = spec_;
        if (own_body != nullptr) {
          spec.task = own_body;
          spec.one_shot = true;
        }
        return WorkerMain(socket, spec);
      },
      setup);
  if (!child.ok()) return child.status();
  ::fcntl(parent_end.get(), F_SETFL, O_NONBLOCK);
  const int barren = worker.barren_starts;
  worker = Worker();
  worker.barren_starts = barren;
  worker.one_shot = own_body != nullptr;
  worker.socket = std::move(parent_end);
  supervisor_.Launch(slot, *std::move(child),
                     SlotOptions{config_.timeout, config_.silent_timeout, true},
                     absl::Now());
  supervisor_.SetClientFd(slot, worker.socket.get());
  return absl::OkStatus();
}

size_t ProcessPool::OneShotSlot() {
  for (size_t i = config_.processes; i < workers_.size(); ++i) {
    if (!supervisor_.active(i)) return i;
  }
  workers_.emplace_back();
  return supervisor_.AddSlot();
}

void ProcessPool::ReadFrom(size_t slot) {
  Worker& worker = workers_[slot];
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = RetryOnEintr(
        [&] { return ::read(worker.socket.get(), buffer, sizeof(buffer)); });
    if (n <= 0) break;
    worker.inbox.append(buffer, n);
    // A short read took all there was: the next would say EAGAIN.
    if (static_cast<size_t>(n) < sizeof(buffer)) break;
  }
  absl::string_view view(worker.inbox);
  while (true) {
    Record record;
    absl::StatusOr<bool> taken = TakeRecord(&view, &record);
    if (!taken.ok()) {
      // The channel is corrupt: nothing the worker says can be trusted.
      worker.result.corrupt = taken.status();
      view = {};
      supervisor_.child(slot).SignalGroup(SIGKILL);
      break;
    }
    if (!*taken) break;
    HandleRecord(slot, record);
  }
  worker.inbox.erase(0, worker.inbox.size() - view.size());
}

void ProcessPool::HandleRecord(size_t slot, const Record& record) {
  Worker& worker = workers_[slot];
  switch (record.kind) {
    case RecordKind::kInitFailed:
      worker.initializer_failed = true;
      initializer_error_ = worker.last_error;
      return;
    case RecordKind::kDone:
      HandleDone(slot, record);
      return;
    case RecordKind::kStarted:
      break;
    default:
      worker.result.Add(record);
      return;
  }
  uint64_t id = 0;
  if (!DecodeInto(record.payload, &id).ok()) return;
  if (id == kOnexitId) return HandleOnexit(slot, record.kind);
  if (worker.assigned.empty() || worker.assigned.front().index != id ||
      worker.assigned.front().stolen) {
    return;
  }
  Input& input = input_at(id);
  const absl::Time now = absl::Now();
  worker.front_started = true;
  worker.ever_started = true;
  worker.barren_starts = 0;
  input.state = Input::kRunning;
  input.started = now;
  input.report.started = true;
  input.report.start_time = now;
  input.report.slot = static_cast<int>(slot);
  input.args.clear();
  input.args.shrink_to_fit();
  supervisor_.Arm(slot, id, now, input.timeout);
}

void ProcessPool::HandleOnexit(size_t slot, RecordKind kind) {
  Worker& worker = workers_[slot];
  const size_t unit = onexit_units_[slot];
  if (kind == RecordKind::kStarted) {
    worker.onexit_started = true;
    worker.ever_started = true;
    const absl::Time now = absl::Now();
    onexit_reports_[slot].queued_time = now;
    onexit_reports_[slot].start_time = now;
    onexit_reports_[slot].slot = static_cast<int>(slot);
    supervisor_.Arm(slot, unit, now);
    return;
  }
  worker.onexit_started = false;
  Conclude(slot, unit, onexit_reports_[slot], config_.timeout, UnitEnd());
}

void ProcessPool::HandleDone(size_t slot, const Record& record) {
  Worker& worker = workers_[slot];
  std::tuple<uint64_t, bool, bool> done;
  if (!DecodeInto(record.payload, &done).ok()) return;
  const auto [id, left_processes, pipes_empty] = done;
  if (id == kOnexitId) return HandleOnexit(slot, record.kind);
  if (worker.assigned.empty() || worker.assigned.front().index != id) return;
  const Held held = worker.assigned.front();
  worker.assigned.pop_front();
  // Skipped for another worker (Steal), which has it now.
  if (held.stolen) return;
  Input& input = input_at(id);
  if (!worker.front_started) {
    // No kStarted: it was withdrawn (claims.h) and the worker skipped it.
    worker.last_error.reset();
    EndUnstarted(id, StepOutcome::kHalted);
    return;
  }
  worker.front_started = false;
  ++worker.inputs_done;
  UnitEnd end;
  end.pipes_empty = pipes_empty;
  Conclude(slot, id, input.report, input.timeout, end);
  worker.last_error = input.report.error;
  // Conclude took the lane's bytes. A process the task left may still hold
  // the lane: the next input gets fresh pipes, and the leftover's later
  // writes fail (EPIPE) as they would on a closed step's pipe.
  if (left_processes) worker.lanes[held.lane] = Lane();
  MarkDone(id);
  MaybeRecycle(slot);
}

void ProcessPool::MaybeRecycle(size_t slot) {
  Worker& worker = workers_[slot];
  if (worker.one_shot || !supervisor_.active(slot) ||
      supervisor_.kill_reason(slot) != KillReason::kNone) {
    return;
  }
  const bool quota = config_.max_inputs_per_worker > 0 &&
                     worker.inputs_done >= config_.max_inputs_per_worker;
  const bool big =
      config_.max_worker_rss_bytes > 0 &&
      ResidentBytes(supervisor_.child(slot).pid()) > config_.max_worker_rss_bytes;
  // What the worker holds but has not started goes to the next one.
  if (quota || big) supervisor_.Kill(slot, KillReason::kHalt, absl::Now());
}

void ProcessPool::InitializerFailed() {
  if (++initializer_failures_ < kMaxInitializerFailures) return;
  // No more workers: everything waiting fails as the initializer did.
  while (!waiting_.empty()) {
    const size_t index = waiting_.front();
    waiting_.pop_front();
    EndUnstarted(index, StepOutcome::kFailed, initializer_error_);
  }
}

void ProcessPool::OnEnded(size_t slot, const ProcessExit& exit,
                          KillReason why) {
  Worker& worker = workers_[slot];
  ReadFrom(slot);  // what it said before it ended
  if (!worker.assigned.empty() && worker.front_started) {
    const size_t index = worker.assigned.front().index;
    worker.assigned.pop_front();
    Input& input = input_at(index);
    input.report.duration = absl::Now() - input.started;
    Conclude(slot, index, input.report, input.timeout, UnitEnd{exit, why});
    MarkDone(index);
  }
  if (worker.onexit_started) {
    Conclude(slot, onexit_units_[slot], onexit_reports_[slot],
             config_.timeout, UnitEnd{exit, why});
  } else if (worker.finish_sent) {
    // Its onexit ended (a no-op Close) or never began: nothing more to
    // replay from it; a replacement gets an onexit unit of its own.
    replayer_.Close(onexit_units_[slot], /*drop=*/false);
  }
  // Inputs it had not started go back to the front of the line, in order
  // (a cancelled one ends).
  for (auto it = worker.assigned.rbegin(); it != worker.assigned.rend(); ++it) {
    if (it->stolen) continue;  // another worker has it
    if (TakeBack(it->index)) waiting_.push_front(it->index);
  }
  worker.assigned.clear();
  worker.outbox.Clear();
  worker.socket.reset();
  for (Lane& lane : worker.lanes) lane = Lane();
  // Only a death of its own counts: one the pool caused (a cancel, a
  // recycle) says nothing about whether workers can start.
  if (!worker.ever_started && why == KillReason::kNone) ++worker.barren_starts;
  if (worker.initializer_failed) InitializerFailed();
  if (stopped()) {
    DropWaiting();
    return;
  }
  if (worker.one_shot) return;
  // A dead worker is replaced while inputs may still come or wait.
  const bool needed = !finishing_ || !waiting_.empty();
  if (needed && worker.barren_starts < kMaxBarrenStarts &&
      initializer_failures_ < kMaxInitializerFailures) {
    if (!StartWorker(slot).ok()) {
      // Out of processes or fds: go on with fewer workers.
    }
  }
}

}  // namespace internal
}  // namespace parallel
