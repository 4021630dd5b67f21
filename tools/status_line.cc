#include "tools/status_line.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "parallel/report_text.h"

namespace tools {
namespace {

void Write(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n =
        ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += n;
  }
}

}  // namespace

StatusLine::StatusLine(const std::vector<std::string>& commands)
    : commands_(commands),
      running_(commands.size(), false),
      stopped_(commands.size(), false) {
  const char* term = std::getenv("TERM");
  dumb_ = term == nullptr || *term == '\0' || std::string(term) == "dumb";
}

void StatusLine::Started(size_t index) {
  running_[index] = true;
  ++active_;
  Draw();
}

void StatusLine::Ended(size_t index) {
  if (running_[index]) {
    running_[index] = false;
    --active_;
  }
  Stopped(index, false);
  ++done_;
  Draw();
}

void StatusLine::Stopped(size_t index, bool stopped) {
  if (stopped_[index] == stopped) return;
  stopped_[index] = stopped;
  stopped ? ++stopped_count_ : --stopped_count_;
  Draw();
}

void StatusLine::Erase() {
  if (!shown_) return;
  Write(dumb_ ? absl::StrCat("\r", std::string(width_, ' '), "\r")
              : "\r\x1b[K");
  shown_ = false;
  width_ = 0;
}

void StatusLine::Draw() {
  // The shortest running command; a stopped one first.
  const std::string* shortest = nullptr;
  for (size_t i = 0; i < commands_.size(); ++i) {
    if (running_[i] && (stopped_count_ == 0 || stopped_[i]) &&
        (shortest == nullptr || commands_[i].size() < shortest->size())) {
      shortest = &commands_[i];
    }
  }
  std::string line =
      absl::StrCat("[", done_, "/", commands_.size(), "] ", active_,
                   " running");
  if (stopped_count_ > 0) {
    absl::StrAppend(&line, ", ", stopped_count_, " stopped");
  }
  if (shortest != nullptr) {
    std::string command = *shortest;
    std::replace(command.begin(), command.end(), '\n', ' ');
    if (command.size() > 60) {
      command = absl::StrCat(parallel::Utf8Prefix(command, 57), "...");
    }
    absl::StrAppend(&line, ": ", command);
  }
  if (dumb_) {
    // Spaces cover what is left of a longer line before.
    const size_t width = line.size();
    if (width < width_) line.append(width_ - width, ' ');
    Write(absl::StrCat("\r", line));
    width_ = width;
  } else {
    Write(absl::StrCat("\r\x1b[K", line));
  }
  shown_ = true;
  ever_shown_ = true;
}

}  // namespace tools
