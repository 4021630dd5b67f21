// The one replayer: output units (a step, a task input, an onexit) in the
// order they must be replayed, each with its captured stdout and stderr.
// The earliest unit not yet replayed is the head: its bytes go out as they
// arrive (live); the others wait in their spill files until their turn.
//
//   Replayer replayer(options);
//   size_t unit = replayer.Add("build");
//   replayer.Open(unit, &child_stdout, &child_stderr);   // pipes for a child
//   ... supervisor: replayer.Drain(unit) when a pipe is readable ...
//   replayer.Close(unit, /*drop=*/false);                // the child is done
//   replayer.Pump();                                     // write what can go
//
// With completion_order, a unit takes its place in the order when it is
// closed instead of when it is added.
//
// Line tagging, the before_output hook and the broken-output latch live here
// and nowhere else. Writing never blocks (sink.h): a full pipe or terminal
// only makes Pump() stop early; the supervisor polls the sink and calls it
// again. At most kMaxHeld finished units keep spill files of their own; the
// output of further ones is moved into one spool file, so descriptor use is
// constant however many units finish ahead of the head (a unit that kept no
// byte has no file and does not count).
//
// Thread-safety: thread-compatible.

#ifndef PARALLEL_INTERNAL_REPLAYER_H_
#define PARALLEL_INTERNAL_REPLAYER_H_

#include <poll.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "parallel/internal/capture.h"
#include "parallel/internal/dont_fork_allocator.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/sink.h"
#include "parallel/step.h"

namespace parallel {
namespace internal {

struct ReplayOptions {
  int output_fd = 1;
  // false: stderr is captured apart and replayed to error_fd.
  bool combine_stderr = true;
  int error_fd = 2;
  std::string temp_dir;  // resolved
  // Prefix every replayed line with "<tag>\t".
  bool tag_lines = false;
  // Called before replayed bytes are written.
  std::function<void()> before_output;
  // false: units replay in Add() order, the earliest unfinished one live.
  // true: in the order they are closed, each whole (none is live).
  bool completion_order = false;
  // true (GNU parallel's --line-buffer): every unit is live, but only whole
  // lines go out, so lines of different units interleave and never mix. A
  // line longer than kLineSlice is written in pieces of that size; a
  // closing unit's unterminated last line goes out as it is. Overrides
  // completion_order.
  bool line_buffer = false;
  // true: no unit is live; each goes out whole once closed, in order (so
  // that its output can still be dropped after it ended: Drop()).
  bool hold_live = false;
};

class Replayer {
 public:
  static constexpr size_t kMaxHeld = 32;
  // How much of the live head is taken at a time before it is written.
  static constexpr uint64_t kHeadSlice = 256 * 1024;
  // With line_buffer: the most read at a time when looking for a line's end.
  static constexpr size_t kLineSlice = 64 * 1024;

  explicit Replayer(ReplayOptions options);
  Replayer(const Replayer&) = delete;
  Replayer& operator=(const Replayer&) = delete;

  // Appends a unit at the end of the replay order.
  size_t Add(std::string tag);
  // Its producer starts: pipes for its stdout and stderr (one pipe for both
  // when combined: *err_w is then invalid and the child uses *out_w twice).
  absl::Status Open(size_t unit, UniqueFd* out_w, UniqueFd* err_w);
  // After Open(): every byte the unit's producer writes is also kept in
  // `dir`/stdout and `dir`/stderr (only `dir`/stdout when combined),
  // created or truncated (GNU parallel's --results). `dir` must exist. An
  // error names the file.
  absl::Status KeepCopies(size_t unit, const std::string& dir);
  // Or: its producer writes into pipes that outlive it (StreamCapture::
  // Borrow); `err_r` is ignored when combined. Close() leaves them open.
  void Attach(size_t unit, int out_r, int err_r);
  // Its producer never started after all (a worker died before taking it):
  // back to waiting, whatever was captured discarded.
  void Reopen(size_t unit);
  // Takes what the unit's pipes hold now.
  void Drain(size_t unit);
  // The producer is done: takes the rest and closes the pipes. With `drop`
  // its output is discarded (halted steps, as chromite). `known_empty`: the
  // producer saw its pipes empty after its last write (a worker's kDone),
  // so there is nothing to take — a read saved per input.
  void Close(size_t unit, bool drop, bool known_empty = false);
  // A closed unit's output is discarded after all (what went out live is
  // out).
  void Drop(size_t unit);
  // Writes what can be written now, in order.
  void Pump();

  bool all_replayed() const { return units_.empty(); }
  // Finished units ahead of the head that keep spill files of their own (at
  // most kMaxHeld).
  size_t held() const { return held_; }
  // Units added so far.
  size_t size() const { return first_ + units_.size(); }
  // Bytes the unit wrote to stdout and stderr together.
  uint64_t total(size_t unit) const;
  // The last few KiB of the unit's output: the combined stream's, or, when
  // stderr is captured apart, stdout's followed by stderr's.
  std::string Tail(size_t unit) const;
  // The first capture error of the unit (ENOSPC, EMFILE in the temp dir),
  // or 0.
  int capture_error(size_t unit) const;

  // Poll entries: open units' pipes (POLLIN) and blocked sinks (POLLOUT).
  // owners[i] is the unit, or kSinkOwner.
  static constexpr size_t kSinkOwner = ~size_t{0};
  void AppendPollFds(DontForkVector<pollfd>* fds,
                     DontForkVector<size_t>* owners) const;
  // A blocked sink may take bytes again.
  void SinkWritable(int fd);
  // Whether a sink waits for its reader to take bytes.
  bool output_blocked() const;
  // Drops the output waiting for blocked sinks, for good (the run was
  // interrupted and their readers take nothing): reported as lost output.
  void GiveUpBlockedOutput();
  // The output that failed first ("stdout"/"stderr") and its errno; 0 if
  // none.
  int output_error() const;
  const std::string& output_error_stream() const;
  // Fills report->output_error / output_errno from output_error(), if any.
  void ReportOutputError(RunReport* report) const;
  // Every descriptor the replayer owns (children close them), plus the
  // replay targets.
  void AppendFds(std::vector<int>* fds) const;

 private:
  enum class State { kWaiting, kOpen, kClosed, kReplayed };
  struct Unit {
    State state = State::kWaiting;
    bool drop = false;
    bool held = false;     // closed ahead of the head, with its own files
    bool spooled = false;  // its bytes were moved into the spool
    std::string tag;
    std::unique_ptr<StreamCapture> out;
    std::unique_ptr<StreamCapture> err;  // only when !combine_stderr
  };

  // Writes the stream's pending bytes to `sink`; true when none are left.
  bool Emit(Unit& unit, StreamCapture& stream, Sink& sink);
  // line_buffer: writes the stream's whole lines (all of it once the unit
  // is closed) through a buffer; true when none are left.
  bool EmitLines(Unit& unit, StreamCapture& stream, Sink& sink);
  // line_buffer: emits every unit's lines and retires the closed ones.
  void PumpLines();
  // Whether a unit's output goes out as it arrives.
  bool live(size_t index) const {
    return options_.line_buffer || (is_head(index) && !options_.hold_live);
  }
  // kOpen, in open_ (and active_ with line_buffer).
  void MarkOpen(size_t index);
  // Releases the unit's streams.
  void Retire(size_t index);
  void Hold(Unit& unit);
  Unit& unit(size_t index) { return units_[index - first_]; }
  const Unit& unit(size_t index) const { return units_[index - first_]; }
  // A unit that was added and is not yet replayed.
  bool pending(size_t index) const {
    return index >= first_ && index < size() &&
           unit(index).state != State::kReplayed;
  }
  bool is_head(size_t index) const {
    return !order_.empty() && order_.front() == index;
  }

  const ReplayOptions options_;
  Sink out_;
  std::unique_ptr<Sink> err_;  // when !combine_stderr
  SpillPool pool_;
  // Units from the earliest not yet replayed (unit `first_`) on; in
  // completion order some after it may be replayed already (kReplayed).
  std::deque<Unit> units_;
  size_t first_ = 0;
  // The replay order of the units not yet replayed: the front is the head.
  // Every unit enters it once (at Add, or at Close in completion order).
  std::deque<size_t> order_;
  // line_buffer: the units opened and not yet replayed, in order.
  std::set<size_t> active_;
  // The units in kOpen, and those whose streams are not yet released, so
  // that polling and forking cost what is open, not what was submitted (a
  // pool may hold every input of a Map here at once).
  std::set<size_t> open_;
  std::set<size_t> with_streams_;
  size_t held_ = 0;
  UniqueFd spool_;
  uint64_t spool_end_ = 0;
  size_t spooled_ = 0;  // units whose bytes are in the spool, not replayed
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_REPLAYER_H_
