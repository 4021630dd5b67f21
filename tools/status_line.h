// parallel_steps' ninja-style status line: "[done/total] N running:
// <command>", redrawn in place on stderr, erased before any output and at
// the end. On a terminal that cannot erase (TERM=dumb or unset) it is only
// returned to and overwritten with spaces: no escape codes. A failed write
// to stderr is ignored (the line is decoration).
//
// Thread-safety: thread-compatible; parallel_steps uses it from the thread
// that runs the steps (its RunHooks).

#ifndef TOOLS_STATUS_LINE_H_
#define TOOLS_STATUS_LINE_H_

#include <cstddef>
#include <string>
#include <vector>

namespace tools {

class StatusLine {
 public:
  // `commands` (indexed as the steps are) must outlive it.
  explicit StatusLine(const std::vector<std::string>& commands);

  void Started(size_t index);
  void Ended(size_t index);
  // A running command was stopped (kill -STOP, Ctrl-Z's SIGTSTP) or
  // continued: the line names a stopped one, which will not end by itself.
  void Stopped(size_t index, bool stopped);
  // Whether the line was ever drawn (progress was on).
  bool ever_shown() const { return ever_shown_; }
  void Erase();

 private:
  void Draw();

  const std::vector<std::string>& commands_;
  std::vector<bool> running_;
  std::vector<bool> stopped_;
  size_t active_ = 0;
  size_t stopped_count_ = 0;
  size_t done_ = 0;
  bool shown_ = false;
  bool ever_shown_ = false;
  bool dumb_ = false;
  size_t width_ = 0;  // bytes of the line shown, when dumb_
};

}  // namespace tools

#endif  // TOOLS_STATUS_LINE_H_
