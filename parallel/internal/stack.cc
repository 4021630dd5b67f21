#include "parallel/internal/stack.h"

#include <execinfo.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/debugging/symbolize.h"
#include "parallel/internal/fd.h"
#include "parallel/internal/record.h"

namespace parallel {
namespace internal {
namespace {

constexpr int kMaxFrames = 64;
constexpr size_t kTraceBufferSize = 16 * 1024;
constexpr size_t kAltStackSize = 64 * 1024;

int g_result_fd = -1;
// The alternate signal stack, in static storage: a forked child inherits it
// without an mmap, and its pages are only touched if a handler runs.
alignas(64) char g_alt_stack[kAltStackSize];
// Static so that a handler on a small alternate stack does not need it there.
char g_trace[kTraceBufferSize];

// Async-signal-safe.
size_t Append(char* buf, size_t size, size_t used, const char* text) {
  while (*text != '\0' && used + 1 < size) buf[used++] = *text++;
  buf[used] = '\0';
  return used;
}

// Async-signal-safe.
size_t AppendHex(char* buf, size_t size, size_t used, uintptr_t value) {
  char digits[2 + 2 * sizeof(value) + 1];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[value & 0xf];
    value >>= 4;
  } while (value != 0);
  char text[sizeof(digits)];
  int t = 0;
  text[t++] = '0';
  text[t++] = 'x';
  while (n > 0) text[t++] = digits[--n];
  text[t] = '\0';
  return Append(buf, size, used, text);
}

// Async-signal-safe.
void WriteStderr(const char* text, size_t size) {
  WriteFully(STDERR_FILENO, text, size);
}

void OnFatalSignal(int signo, siginfo_t*, void* ucontext) {
  const size_t n = FormatStackTrace(g_trace, sizeof(g_trace), 0, ucontext);
  WriteRecord(g_result_fd, RecordKind::kCrash, g_trace, n);
  // Die of the same signal so the parent sees it in the wait status.
  signal(signo, SIG_DFL);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, signo);
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  raise(signo);
  _exit(128 + signo);
}

void OnDumpStack(int, siginfo_t*, void* ucontext) {
  static const char kHeader[] =
      "\nparallel: step timed out; stack of its main thread:\n";
  const size_t n = FormatStackTrace(g_trace, sizeof(g_trace), 0, ucontext);
  WriteStderr(kHeader, sizeof(kHeader) - 1);
  WriteStderr(g_trace, n);
  WriteRecord(g_result_fd, RecordKind::kHang, g_trace, n);
  // The parent is about to terminate the group; do it now to save it a wait.
  kill(0, SIGTERM);
}

}  // namespace

size_t FormatStackTrace(char* buf, size_t size, int skip,
                        const void* ucontext) {
  // glibc's backtrace() unwinds with the DWARF tables, so it walks through the
  // kernel's signal frame and through libc code built without frame pointers
  // (abort, raise), where a frame-pointer walk stops.
  void* frames[kMaxFrames];
  const int depth = backtrace(frames, kMaxFrames);
  int first = std::min(depth, skip + 1);  // + 1: this function
  if (ucontext != nullptr) {
    // Start at the interrupted instruction, above the handler's own frames.
    const auto* context = static_cast<const ucontext_t*>(ucontext);
    void* pc = reinterpret_cast<void*>(context->uc_mcontext.gregs[REG_RIP]);
    for (int i = 0; i < depth; ++i) {
      if (frames[i] == pc) {
        first = i;
        break;
      }
    }
  }
  size_t used = 0;
  buf[0] = '\0';
  char symbol[512];
  for (int i = first; i < depth; ++i) {
    used = Append(buf, size, used, "    @ ");
    used = AppendHex(buf, size, used, reinterpret_cast<uintptr_t>(frames[i]));
    // Return addresses point after the call; symbolize the call itself. The
    // first frame of a signal's stack is the interrupted instruction itself.
    const bool exact = i == first && ucontext != nullptr;
    const char* pc = static_cast<const char*>(frames[i]) - (exact ? 0 : 1);
    if (absl::Symbolize(pc, symbol, sizeof(symbol))) {
      used = Append(buf, size, used, "  ");
      used = Append(buf, size, used, symbol);
    } else {
      used = Append(buf, size, used, "  (unknown)");
    }
    used = Append(buf, size, used, "\n");
  }
  return used;
}

void InstallChildHandlers(int result_fd) {
  g_result_fd = result_fd;
  // An alternate stack so that a stack overflow can still be reported.
  stack_t ss = {};
  ss.ss_sp = g_alt_stack;
  ss.ss_size = kAltStackSize;
  sigaltstack(&ss, nullptr);
  struct sigaction action = {};
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  action.sa_sigaction = OnFatalSignal;
  for (int signo : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    sigaction(signo, &action, nullptr);
  }
  action.sa_sigaction = OnDumpStack;
  sigaction(kDumpStackSignal, &action, nullptr);
}

void PrepareChildHandlers() {
  // The first backtrace() loads libgcc_s; do it now, never in a handler.
  void* warm_up[1];
  backtrace(warm_up, 1);
}

}  // namespace internal
}  // namespace parallel
