// An allocator whose memory children do not inherit (MADV_DONTFORK).
//
// fork() copies the page tables of every private mapping and each child tears
// its copy down again when it exits, so the cost of a step grows with the
// parent's resident memory. The engine's per-step bookkeeping is never
// touched by a child; keeping it out of the children makes a run of 100,000
// steps cost per step what a run of 1,000 does.
//
// Thread-safety: stateless; allocate/deallocate are thread-safe.

#ifndef PARALLEL_INTERNAL_DONT_FORK_ALLOCATOR_H_
#define PARALLEL_INTERNAL_DONT_FORK_ALLOCATOR_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <new>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace parallel {
namespace internal {

template <typename T>
class DontForkAllocator {
 public:
  using value_type = T;

  DontForkAllocator() = default;
  template <typename U>
  DontForkAllocator(const DontForkAllocator<U>&) {}  // NOLINT: allocator rebind

  T* allocate(size_t n) {
    const size_t bytes = RoundUp(n * sizeof(T));
    void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) throw std::bad_alloc();
#if defined(__SANITIZE_ADDRESS__)
    // The range may have held a thread's stack whose redzones ASan poisoned
    // and never cleared; fresh memory is addressable.
    ASAN_UNPOISON_MEMORY_REGION(memory, bytes);
#endif
    // Best effort: without it children merely inherit the pages.
    ::madvise(memory, bytes, MADV_DONTFORK);
    return static_cast<T*>(memory);
  }

  void deallocate(T* p, size_t n) { ::munmap(p, RoundUp(n * sizeof(T))); }

  template <typename U>
  bool operator==(const DontForkAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const DontForkAllocator<U>&) const {
    return false;
  }

 private:
  static size_t RoundUp(size_t bytes) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return bytes == 0 ? page : (bytes + page - 1) / page * page;
  }
};

// A vector of the parent's alone. A forked child must never touch it — nor
// anything that refers to it, destructors included (children end with
// _exit). Each growth is a mapping of its own (a system call, whole pages):
// for containers that grow rarely.
template <typename T>
using DontForkVector = std::vector<T, DontForkAllocator<T>>;

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_DONT_FORK_ALLOCATOR_H_
