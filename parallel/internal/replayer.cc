#include "parallel/internal/replayer.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace parallel {
namespace internal {

Replayer::Replayer(ReplayOptions options)
    : options_(std::move(options)),
      out_(options_.output_fd, "stdout"),
      err_(options_.combine_stderr
               ? nullptr
               : std::make_unique<Sink>(options_.error_fd, "stderr")),
      pool_(options_.temp_dir) {}

size_t Replayer::Add(std::string tag) {
  units_.emplace_back();
  units_.back().tag = std::move(tag);
  if (!options_.completion_order && !options_.line_buffer) {
    order_.push_back(size() - 1);
  }
  return size() - 1;
}

absl::Status Replayer::Open(size_t index, UniqueFd* out_w, UniqueFd* err_w) {
  Unit& unit = this->unit(index);
  absl::StatusOr<StreamCapture> out = StreamCapture::Open(out_w);
  if (!out.ok()) return out.status();
  if (!options_.combine_stderr) {
    absl::StatusOr<StreamCapture> err = StreamCapture::Open(err_w);
    if (!err.ok()) {
      out_w->reset();
      return err.status();
    }
    unit.err = std::make_unique<StreamCapture>(*std::move(err));
  }
  unit.out = std::make_unique<StreamCapture>(*std::move(out));
  MarkOpen(index);
  return absl::OkStatus();
}

absl::Status Replayer::KeepCopies(size_t index, const std::string& dir) {
  Unit& unit = this->unit(index);
  for (auto [stream, name] : {std::pair{unit.out.get(), "stdout"},
                              std::pair{unit.err.get(), "stderr"}}) {
    if (stream == nullptr) continue;
    const std::string path = absl::StrCat(dir, "/", name);
    UniqueFd copy(RetryOnEintr([&] {
      return ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                    0666);
    }));
    if (!copy.valid()) {
      return ErrnoStatus(absl::StrCat("cannot create ", path));
    }
    stream->KeepCopy(std::move(copy));
  }
  return absl::OkStatus();
}

void Replayer::Attach(size_t index, int out_r, int err_r) {
  Unit& unit = this->unit(index);
  unit.out = std::make_unique<StreamCapture>(StreamCapture::Borrow(out_r));
  if (!options_.combine_stderr) {
    unit.err = std::make_unique<StreamCapture>(StreamCapture::Borrow(err_r));
  }
  MarkOpen(index);
}

void Replayer::MarkOpen(size_t index) {
  unit(index).state = State::kOpen;
  open_.insert(index);
  with_streams_.insert(index);
  if (options_.line_buffer) active_.insert(index);
}

void Replayer::Reopen(size_t index) {
  if (!pending(index)) return;
  Unit& unit = this->unit(index);
  for (auto* stream : {&unit.out, &unit.err}) {
    if (*stream) (*stream)->Release(pool_);
    stream->reset();
  }
  unit.state = State::kWaiting;
  active_.erase(index);
  open_.erase(index);
  with_streams_.erase(index);
}

void Replayer::Drain(size_t index) {
  if (!pending(index)) return;
  Unit& unit = this->unit(index);
  if (!live(index) || unit.drop) {
    if (unit.out) unit.out->Drain(pool_);
    if (unit.err) unit.err->Drain(pool_);
    return;
  }
  // The live head: take a slice, write it, and again, so that its spill
  // file stays small (it is rewound once written) however much it prints.
  for (int slice = 0; slice < 16; ++slice) {
    uint64_t before = 0;
    uint64_t after = 0;
    for (auto* stream : {unit.out.get(), unit.err.get()}) {
      if (stream == nullptr) continue;
      before += stream->total();
      stream->Drain(pool_, kHeadSlice);
      after += stream->total();
    }
    bool written = true;
    if (unit.out) written = Emit(unit, *unit.out, out_) && written;
    if (unit.err) written = Emit(unit, *unit.err, *err_) && written;
    if (after == before || !written) return;
  }
}

void Replayer::Close(size_t index, bool drop, bool known_empty) {
  if (!pending(index)) return;
  Unit& unit = this->unit(index);
  if (unit.state == State::kClosed) return;
  unit.state = State::kClosed;
  open_.erase(index);
  if (options_.completion_order && !options_.line_buffer) {
    order_.push_back(index);
  }
  unit.drop = drop;
  if (unit.out) unit.out->Close(pool_, known_empty);
  if (unit.err) unit.err->Close(pool_, known_empty);
  if (drop) {
    Retire(index);
  } else if (!live(index)) {
    Hold(unit);
  }
}

void Replayer::Drop(size_t index) {
  if (!pending(index)) return;
  Unit& unit = this->unit(index);
  if (unit.state != State::kClosed || unit.drop) return;
  unit.drop = true;
  Retire(index);
}

void Replayer::Hold(Unit& unit) {
  // A unit that kept no byte has no file (a stream takes one with its first
  // byte, and a closed unit gets no more): nothing to hold or spool. Counted,
  // such units (most of a pool's) would push the ones with output into the
  // spool, a copy and a seek each.
  if (!(unit.out && unit.out->file() >= 0) &&
      !(unit.err && unit.err->file() >= 0)) {
    return;
  }
  if (held_ < kMaxHeld) {
    unit.held = true;
    ++held_;
    return;
  }
  // Too many units wait with files of their own: move this one's bytes into
  // the spool, one file for all of them.
  if (!spool_.valid()) {
    absl::StatusOr<UniqueFd> spool = CreateCaptureFile(options_.temp_dir);
    if (!spool.ok()) {
      unit.held = true;  // keep the files, at the cost of descriptors
      ++held_;
      return;
    }
    spool_ = *std::move(spool);
  }
  // CopyRange appends at the spool's file position: put it at the end we
  // count (it was rewound when the spool emptied).
  if (::lseek(spool_.get(), static_cast<off_t>(spool_end_), SEEK_SET) < 0) {
    unit.held = true;
    ++held_;
    return;
  }
  for (StreamCapture* stream : {unit.out.get(), unit.err.get()}) {
    if (stream == nullptr || stream->file() < 0) continue;
    absl::StatusOr<uint64_t> copied = CopyRange(
        stream->file(), stream->begin(), stream->pending(), spool_.get());
    if (!copied.ok() || *copied != stream->pending()) {
      unit.held = true;
      ++held_;
      return;
    }
  }
  for (StreamCapture* stream : {unit.out.get(), unit.err.get()}) {
    if (stream == nullptr || stream->file() < 0) continue;
    const uint64_t length = stream->pending();
    stream->MoveTo(spool_.get(), spool_end_, pool_);
    spool_end_ += length;
  }
  unit.spooled = true;
  ++spooled_;
}

void Replayer::Retire(size_t index) {
  Unit& unit = this->unit(index);
  with_streams_.erase(index);
  if (unit.held) {
    unit.held = false;
    --held_;
  }
  for (auto* stream : {&unit.out, &unit.err}) {
    if (*stream) (*stream)->Release(pool_);
  }
  if (unit.spooled) {
    unit.spooled = false;
    if (--spooled_ == 0 && spool_end_ > SpillPool::kTruncateAbove) {
      // Nothing in the spool is waiting: start it over.
      if (::ftruncate(spool_.get(), 0) == 0) spool_end_ = 0;
    }
  }
  // The counts (total, tail) are read before a unit is retired; the pipes
  // are closed by Close().
  unit.out.reset();
  unit.err.reset();
}

bool Replayer::Emit(Unit& unit, StreamCapture& stream, Sink& sink) {
  if (sink.broken()) {
    stream.Consume(stream.pending());  // dropped: the output is gone
    return true;
  }
  if (stream.pending() == 0) return sink.Flush();
  if (options_.line_buffer) return EmitLines(unit, stream, sink);
  if (options_.before_output) options_.before_output();
  if (!options_.tag_lines) {
    stream.Consume(sink.Copy(stream.file(), stream.begin(), stream.pending()));
    return stream.pending() == 0 || sink.broken();
  }
  // Tagging rewrites the bytes, so they pass through a buffer; the sink
  // queues what a full pipe does not take.
  std::string chunk;
  std::string tagged;
  while (stream.pending() > 0 && sink.Flush()) {
    chunk.resize(std::min<uint64_t>(stream.pending(), 1 << 16));
    const ssize_t n = RetryOnEintr([&] {
      return ::pread(stream.file(), chunk.data(), chunk.size(), stream.begin());
    });
    if (n <= 0) {
      stream.Consume(stream.pending());
      break;
    }
    tagged.clear();
    for (ssize_t i = 0; i < n; ++i) {
      if (stream.at_line_start) tagged += unit.tag + "\t";
      tagged.push_back(chunk[i]);
      stream.at_line_start = chunk[i] == '\n';
    }
    stream.Consume(static_cast<uint64_t>(n));
    sink.Write(tagged);
  }
  return stream.pending() == 0 && (sink.Flush() || sink.broken());
}

bool Replayer::EmitLines(Unit& unit, StreamCapture& stream, Sink& sink) {
  // Whole lines only, so each goes to the sink in one Write() (which queues
  // what a full pipe does not take) and never shares a line with another
  // unit's bytes.
  const bool closed = unit.state != State::kOpen;
  std::string chunk;
  std::string lines;
  while (stream.pending() > 0 && sink.Flush()) {
    chunk.resize(std::min<uint64_t>(stream.pending(), kLineSlice));
    const ssize_t n = RetryOnEintr([&] {
      return ::pread(stream.file(), chunk.data(), chunk.size(), stream.begin());
    });
    if (n <= 0) {
      stream.Consume(stream.pending());
      break;
    }
    size_t take = static_cast<size_t>(n);
    if (!closed && take < kLineSlice) {
      const void* last = ::memrchr(chunk.data(), '\n', take);
      if (last == nullptr) break;  // a line still being written
      take = static_cast<const char*>(last) - chunk.data() + 1;
    }
    lines.clear();
    for (size_t i = 0; i < take; ++i) {
      if (options_.tag_lines && stream.at_line_start) lines += unit.tag + "\t";
      lines.push_back(chunk[i]);
      stream.at_line_start = chunk[i] == '\n';
    }
    if (options_.before_output) options_.before_output();
    stream.Consume(take);
    sink.Write(lines);
  }
  if (!closed) return sink.Flush() || sink.broken();
  return stream.pending() == 0 && (sink.Flush() || sink.broken());
}

void Replayer::PumpLines() {
  for (auto it = active_.begin(); it != active_.end();) {
    Unit& unit = this->unit(*it);
    bool done = true;
    if (!unit.drop) {
      if (unit.out) done = Emit(unit, *unit.out, out_) && done;
      if (unit.err) done = Emit(unit, *unit.err, *err_) && done;
    }
    if (unit.state == State::kClosed && done) {
      Retire(*it);
      unit.state = State::kReplayed;
      it = active_.erase(it);
    } else {
      ++it;
    }
  }
  while (!units_.empty() && units_.front().state == State::kReplayed) {
    units_.pop_front();
    ++first_;
  }
}

void Replayer::Pump() {
  if (options_.line_buffer) return PumpLines();
  while (!order_.empty()) {
    Unit& unit = this->unit(order_.front());
    if (unit.state == State::kWaiting) return;
    if (unit.state == State::kOpen && !live(order_.front())) return;
    bool done = true;
    if (!unit.drop) {
      if (unit.out) done = Emit(unit, *unit.out, out_) && done;
      if (unit.err) done = Emit(unit, *unit.err, *err_) && done;
    }
    if (unit.state == State::kOpen || !done) return;  // live head, or full
    Retire(order_.front());
    unit.state = State::kReplayed;
    order_.pop_front();
    while (!units_.empty() && units_.front().state == State::kReplayed) {
      units_.pop_front();
      ++first_;
    }
  }
}

uint64_t Replayer::total(size_t index) const {
  if (!pending(index)) return 0;
  const Unit& unit = this->unit(index);
  return (unit.out ? unit.out->total() : 0) +
         (unit.err ? unit.err->total() : 0);
}

std::string Replayer::Tail(size_t index) const {
  if (!pending(index)) return "";
  const Unit& unit = this->unit(index);
  std::string tail = unit.out ? unit.out->Tail() : "";
  // Streams captured apart: which line came first between them is not
  // known, so stderr's tail follows stdout's (a compiler's or ls's error is
  // there, not in stdout).
  if (unit.err) {
    std::string err = unit.err->Tail();
    if (!tail.empty() && !err.empty() && tail.back() != '\n') tail += '\n';
    tail += err;
  }
  return tail;
}

int Replayer::capture_error(size_t index) const {
  if (!pending(index)) return 0;
  const Unit& unit = this->unit(index);
  for (const auto* stream : {&unit.out, &unit.err}) {
    if (*stream && (*stream)->error() != 0) return (*stream)->error();
    if (*stream && (*stream)->copy_error() != 0) {
      return (*stream)->copy_error();
    }
  }
  return 0;
}

void Replayer::AppendPollFds(DontForkVector<pollfd>* fds,
                             DontForkVector<size_t>* owners) const {
  for (const size_t index : open_) {
    const Unit& unit = this->unit(index);
    for (const auto* stream : {&unit.out, &unit.err}) {
      if (*stream && (*stream)->pipe_fd() >= 0) {
        fds->push_back({(*stream)->pipe_fd(), POLLIN, 0});
        owners->push_back(index);
      }
    }
  }
  for (const Sink* sink : {static_cast<const Sink*>(&out_),
                           static_cast<const Sink*>(err_.get())}) {
    if (sink != nullptr && sink->blocked() && !sink->broken()) {
      fds->push_back({sink->poll_fd(), POLLOUT, 0});
      owners->push_back(kSinkOwner);
    }
  }
}

void Replayer::SinkWritable(int fd) {
  if (out_.poll_fd() == fd) out_.Unblock();
  if (err_ && err_->poll_fd() == fd) err_->Unblock();
}

bool Replayer::output_blocked() const {
  return (out_.blocked() && !out_.broken()) ||
         (err_ && err_->blocked() && !err_->broken());
}

void Replayer::GiveUpBlockedOutput() {
  for (Sink* sink : {&out_, err_.get()}) {
    if (sink != nullptr && sink->blocked() && !sink->broken()) {
      sink->GiveUp(EAGAIN);
    }
  }
}

int Replayer::output_error() const {
  if (out_.error() != 0) return out_.error();
  return err_ ? err_->error() : 0;
}

const std::string& Replayer::output_error_stream() const {
  return out_.error() != 0 || !err_ ? out_.name() : err_->name();
}

void Replayer::ReportOutputError(RunReport* report) const {
  const int error = output_error();
  if (error == 0) return;
  report->output_errno = error;
  const Sink& sink = out_.error() != 0 || !err_ ? out_ : *err_;
  report->output_error = ExceptionInfo{
      std::string(kOutputLost),
      sink.given_up()
          ? absl::StrCat("gave up on the replayed ", sink.name(),
                         " after the interrupt: its reader took nothing")
          : absl::StrCat("could not write the replayed ", sink.name(), ": ",
                         ::strerror(error)),
      "", "run", 0};
}

void Replayer::AppendFds(std::vector<int>* fds) const {
  for (const Sink* sink : {static_cast<const Sink*>(&out_),
                           static_cast<const Sink*>(err_.get())}) {
    if (sink == nullptr) continue;
    fds->push_back(sink->fd());
    if (sink->own_fd() >= 0) fds->push_back(sink->own_fd());
  }
  pool_.AppendFds(fds);
  if (spool_.valid()) fds->push_back(spool_.get());
  for (const size_t index : with_streams_) {
    const Unit& unit = this->unit(index);
    for (const auto* stream : {&unit.out, &unit.err}) {
      if (*stream) (*stream)->AppendFds(fds);
    }
  }
}

}  // namespace internal
}  // namespace parallel
