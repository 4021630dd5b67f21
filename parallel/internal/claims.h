// Withdrawing an input that a worker has been sent but has not started: how
// Cancel(kIfPending) stays exact while workers are sent their next input
// before they finish the one they run (several at once, worker_pool.h), and
// how an idle worker takes an input another holds without it running twice.
//
// One word per worker lane, in memory shared with the workers (mapped before
// they are forked; replacements inherit it). The parent writes Queued(i)
// before it sends input i; the worker swaps it to Started(i) just before it
// runs the input — or finds Withdrawn(i) and skips it (its kDone then comes
// without a kStarted); a canceller swaps Queued(i) to Withdrawn(i). One
// compare-and-swap decides, whichever side comes first.
//
// Thread-safety: the words are lock-free atomics (address-free, so valid
// across processes); ClaimBoard itself is owned by the pool's thread.

#ifndef PARALLEL_INTERNAL_CLAIMS_H_
#define PARALLEL_INTERNAL_CLAIMS_H_

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace parallel {
namespace internal {

using ClaimWord = std::atomic<uint64_t>;
static_assert(ClaimWord::is_always_lock_free);

// An input message's claim when it has none (one-shot processes, task
// runners).
inline constexpr uint32_t kNoClaim = ~uint32_t{0};

enum class ClaimState : uint64_t { kQueued = 1, kStarted = 2, kWithdrawn = 3 };

inline uint64_t ClaimValue(uint64_t input, ClaimState state) {
  return ((input + 1) << 2) | static_cast<uint64_t>(state);
}

// The worker's side: true if it may run `input` (it was still queued).
inline bool ClaimStart(ClaimWord* word, uint64_t input) {
  uint64_t expected = ClaimValue(input, ClaimState::kQueued);
  return word->compare_exchange_strong(
      expected, ClaimValue(input, ClaimState::kStarted));
}

// A canceller's side: true if `input` will never start.
inline bool ClaimWithdraw(ClaimWord* word, uint64_t input) {
  uint64_t expected = ClaimValue(input, ClaimState::kQueued);
  return word->compare_exchange_strong(
             expected, ClaimValue(input, ClaimState::kWithdrawn)) ||
         expected == ClaimValue(input, ClaimState::kWithdrawn);
}

// `count` zeroed words in shared anonymous memory (none if count is 0 or
// the mapping fails: then inputs are sent without claims, and a withdraw
// finds nothing to withdraw).
class ClaimBoard {
 public:
  explicit ClaimBoard(size_t count) {
    if (count == 0) return;
    void* memory = ::mmap(nullptr, count * sizeof(ClaimWord),
                          PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                          -1, 0);
    if (memory == MAP_FAILED) return;
    words_ = static_cast<ClaimWord*>(memory);
    count_ = count;
    for (size_t i = 0; i < count_; ++i) new (&words_[i]) ClaimWord(0);
  }
  ~ClaimBoard() {
    if (words_ != nullptr) ::munmap(words_, count_ * sizeof(ClaimWord));
  }
  ClaimBoard(const ClaimBoard&) = delete;
  ClaimBoard& operator=(const ClaimBoard&) = delete;

  ClaimWord* words() const { return words_; }
  size_t size() const { return count_; }

 private:
  ClaimWord* words_ = nullptr;
  size_t count_ = 0;
};

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_CLAIMS_H_
