#include "parallel/internal/throw_trace.h"

#include <atomic>

#include "parallel/internal/stack.h"

namespace parallel {
namespace internal {
namespace {

std::atomic<ThrowTraceProvider> g_provider{nullptr};

}  // namespace

void SetThrowTraceProvider(ThrowTraceProvider provider) {
  g_provider.store(provider, std::memory_order_release);
}

std::string TracebackForCurrentException() {
  std::string traceback;
  ThrowTraceProvider provider = g_provider.load(std::memory_order_acquire);
  if (provider != nullptr && provider(&traceback)) return traceback;
  char buffer[8192];
  const size_t n = FormatStackTrace(buffer, sizeof(buffer), 1);
  return std::string(buffer, n);
}

}  // namespace internal
}  // namespace parallel
