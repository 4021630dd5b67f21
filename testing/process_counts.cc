#include "testing/process_counts.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace parallel {
namespace testing {
namespace {

std::string TestTmpDir() {
  const char* dir = getenv("TEST_TMPDIR");
  return dir != nullptr && dir[0] != '\0' ? dir : "/tmp";
}

}  // namespace

OutputFile::OutputFile() {
  std::string path = TestTmpDir() + "/output-XXXXXX";
  fd_ = mkostemp(path.data(), O_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("OutputFile: mkostemp failed");
  unlink(path.c_str());
}

OutputFile::~OutputFile() { close(fd_); }

std::string OutputFile::Contents() const {
  std::string text;
  char buffer[1 << 16];
  off_t offset = 0;
  while (true) {
    const ssize_t n = pread(fd_, buffer, sizeof(buffer), offset);
    if (n <= 0) break;
    text.append(buffer, n);
    offset += n;
  }
  return text;
}

void Say(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(1, text.data() + done, text.size() - done);
    if (n <= 0) std::abort();
    done += n;
  }
}

ParallelOptions Into(const OutputFile& out) {
  ParallelOptions options;
  options.output_fd = out.fd();
  return options;
}

int CountOpenFds() { return CountDirEntries("/proc/self/fd") - 1; }

std::vector<pid_t> ChildPids() {
  std::vector<pid_t> pids;
  const pid_t self = getpid();
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    const pid_t pid = atoi(entry->d_name);
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(entry->d_name) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // "pid (comm) state ppid ...": comm may hold spaces, so parse after ')'.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid;
    if (rest >> state >> ppid && ppid == self) pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

int CountDirEntries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") ++count;
  }
  closedir(d);
  return count;
}

std::string MakeTempDir() {
  std::string path = TestTmpDir() + "/dir-XXXXXX";
  if (mkdtemp(path.data()) == nullptr) {
    throw std::runtime_error("MakeTempDir: mkdtemp failed");
  }
  return path;
}

bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

PipeReader::PipeReader() {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) std::abort();
  read_end_ = ends[0];
  write_end_ = ends[1];
}

PipeReader::~PipeReader() {
  if (write_end_ >= 0) ::close(write_end_);
  if (thread_.joinable()) thread_.join();
  if (read_end_ >= 0) ::close(read_end_);
}

void PipeReader::Start() {
  thread_ = std::thread([this] {
    char buffer[1 << 16];
    ssize_t n;
    while ((n = ::read(read_end_, buffer, sizeof(buffer))) > 0) {
      text_.append(buffer, n);
    }
  });
}

void PipeReader::CloseReadEnd() {
  ::close(read_end_);
  read_end_ = -1;
}

std::string PipeReader::Finish() {
  ::close(write_end_);
  write_end_ = -1;
  if (thread_.joinable()) thread_.join();
  return text_;
}

ScopedFileSizeLimit::ScopedFileSizeLimit(uint64_t bytes) {
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGXFSZ, &ignore, &saved_action_);
  ::getrlimit(RLIMIT_FSIZE, &saved_limit_);
  const rlimit limit = {bytes, saved_limit_.rlim_max};
  ::setrlimit(RLIMIT_FSIZE, &limit);
}

ScopedFileSizeLimit::~ScopedFileSizeLimit() {
  ::setrlimit(RLIMIT_FSIZE, &saved_limit_);
  ::sigaction(SIGXFSZ, &saved_action_, nullptr);
}

}  // namespace testing
}  // namespace parallel
