// Stack traces in a child: on a fatal signal, and on request before a hung
// step is killed.
//
// Thread-safety: FormatStackTrace is async-signal-safe. InstallChildHandlers
// is meant for a freshly forked child, which has one thread.

#ifndef PARALLEL_INTERNAL_STACK_H_
#define PARALLEL_INTERNAL_STACK_H_

#include <csignal>
#include <cstddef>

namespace parallel {
namespace internal {

// The signal the parent sends a hung child's main thread to make it dump its
// stack into its own stderr before it is killed.
inline constexpr int kDumpStackSignal = SIGXCPU;

// Writes the calling thread's symbolized stack into buf, one frame a line
// ("    @ 0x4005d0  Foo()"), skipping `skip` innermost frames. Returns the
// length written (always < size, NUL-terminated). In a signal handler, pass
// its ucontext so the walk starts at the interrupted code, which works even on
// an alternate signal stack. Async-signal-safe.
size_t FormatStackTrace(char* buf, size_t size, int skip,
                        const void* ucontext = nullptr);

// In a forked child: on SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT, append a
// kCrash record with the crashing thread's stack to `result_fd`, then die of
// the same signal. On kDumpStackSignal, write the stack to stderr and a kHang
// record to `result_fd`, then end the process group with SIGTERM.
// Async-signal-safe.
void InstallChildHandlers(int result_fd);

// In the parent, once: loads what the handlers use (the unwinder) so that
// forked children inherit it ready.
void PrepareChildHandlers();

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_STACK_H_
