#include "parallel/sync.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <stdexcept>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace parallel {
namespace internal {
namespace {

[[noreturn]] void ThrowErrno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), what);
}

// Milliseconds for poll() until `deadline` (-1 = forever), rounded up.
int PollMillis(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

// Reads exactly `size` bytes unless the stream ends first; returns how
// many were read, or -1 with errno.
ssize_t ReadFully(int fd, char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n =
        RetryOnEintr([&] { return ::read(fd, data + done, size - done); });
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

// Spinning before sleeping: when the other process runs on another CPU,
// the change it is about to make usually comes within microseconds, and
// catching it here saves both a futex sleep and the other side's wake-up
// call (a few microseconds each way on a virtual machine). Bounded, so a
// waiter with nothing coming soon goes to sleep after ~10 microseconds.
constexpr int kWordSpins = 256;
constexpr int kLockSpins = 64;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

bool SpinWhile(const std::atomic<uint32_t>* word, uint32_t expected) {
  for (int i = 0; i < kWordSpins; ++i) {
    if (word->load(std::memory_order_acquire) != expected) return true;
    CpuRelax();
  }
  return word->load(std::memory_order_acquire) != expected;
}

SharedMapping::SharedMapping(size_t bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_ = std::max<size_t>(page, (bytes + page - 1) / page * page);
  address_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (address_ == MAP_FAILED) {
    ThrowErrno(errno, absl::StrCat("mmap of ", size_, " shared bytes"));
  }
}

SharedMapping::~SharedMapping() { ::munmap(address_, size_); }

void InitRobustMutex(pthread_mutex_t* mutex) {
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  const int error = pthread_mutex_init(mutex, &attributes);
  pthread_mutexattr_destroy(&attributes);
  if (error != 0) ThrowErrno(error, "pthread_mutex_init");
}

bool LockRobust(pthread_mutex_t* mutex) {
  for (int i = 0; i < kLockSpins; ++i) {
    const int error = pthread_mutex_trylock(mutex);
    if (error == 0) return false;
    if (error == EOWNERDEAD) {
      pthread_mutex_consistent(mutex);
      return true;
    }
    if (error != EBUSY) ThrowErrno(error, "pthread_mutex_trylock");
    CpuRelax();
  }
  const int error = pthread_mutex_lock(mutex);
  if (error == EOWNERDEAD) {
    pthread_mutex_consistent(mutex);
    return true;
  }
  if (error != 0) ThrowErrno(error, "pthread_mutex_lock");
  return false;
}

bool FutexWait(std::atomic<uint32_t>* word, uint32_t expected,
               absl::Time deadline) {
  struct timespec relative;
  struct timespec* timeout = nullptr;
  if (deadline != absl::InfiniteFuture()) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    relative = absl::ToTimespec(left);
    timeout = &relative;
  }
  // Shared (not FUTEX_PRIVATE_FLAG): the word is in memory other processes
  // map. EAGAIN (the word changed) and EINTR are early returns.
  const long result = ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word),
                                FUTEX_WAIT, expected, timeout, nullptr, 0);
  if (result == -1 && errno == ETIMEDOUT) return false;
  return true;
}

void FutexWake(std::atomic<uint32_t>* word, int count) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, count,
            nullptr, nullptr, 0);
}

std::pair<int, int> DuplexSocketPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    ThrowErrno(errno, "Pipe: socketpair");
  }
  return {fds[0], fds[1]};
}

void ThrowQueuePutFailure(const absl::Status& status) {
  throw std::system_error(EIO, std::generic_category(),
                          absl::StrCat("Queue::Put: ", status.message()));
}

void ThrowArrayIndex(size_t i, size_t size) {
  throw std::out_of_range(
      absl::StrCat("parallel::Array: index ", i, " is out of range (size ", size, ")"));
}

// ---------------------------------------------------------------- Queue

namespace {
constexpr size_t kRingBytes = size_t{4} << 20;
// Items larger than this are always spilled to a file.
constexpr size_t kInlineMax = size_t{64} << 10;
}  // namespace

struct QueueCore::Shared {
  pthread_mutex_t mutex;
  std::atomic<uint32_t> put_seq;  // futex word: bumped by every Put
  std::atomic<uint32_t> get_seq;  // futex word: bumped by every Get
  std::atomic<uint64_t> next_spill;
  // The rest only under `mutex`. Records live at ring positions [head,
  // tail) (positions grow forever; the ring offset is position % capacity).
  // A change is committed by its last store (tail for a Put, head for a
  // Get), so a holder that dies before it leaves the queue as it was;
  // `items` and `queued_bytes` are recounted then (Recover).
  uint32_t getters_waiting;
  uint32_t putters_waiting;
  uint64_t head;
  uint64_t tail;
  uint64_t items;
  uint64_t queued_bytes;
};

struct QueueCore::Record {
  uint64_t size;      // the item's bytes
  uint64_t spill_id;  // 0: the bytes follow in the ring; else a file
  uint64_t footprint() const {
    return sizeof(Record) + (spill_id == 0 ? (size + 7) / 8 * 8 : 0);
  }
};

QueueCore::QueueCore(size_t max_bytes)
    : max_bytes_(max_bytes),
      owner_(::getpid()),
      memory_(sizeof(Shared) + 64 + kRingBytes),
      shared_(new (memory_.get()) Shared()),
      ring_(static_cast<char*>(memory_.get()) + (sizeof(Shared) + 63) / 64 * 64),
      capacity_(kRingBytes) {
  InitRobustMutex(&shared_->mutex);
  shared_->next_spill.store(1);
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                   "/parallel-queue-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    ThrowErrno(errno, absl::StrCat("Queue: mkdtemp ", pattern));
  }
  spill_dir_ = std::move(pattern);
}

QueueCore::~QueueCore() {
  if (::getpid() != owner_) return;  // a forked copy: the maker cleans up
  if (DIR* dir = ::opendir(spill_dir_.c_str())) {
    while (struct dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      ::unlink(absl::StrCat(spill_dir_, "/", entry->d_name).c_str());
    }
    ::closedir(dir);
  }
  ::rmdir(spill_dir_.c_str());
}

std::string QueueCore::SpillPath(uint64_t id) const {
  return absl::StrCat(spill_dir_, "/", id);
}

void QueueCore::CopyIn(uint64_t at, const void* data, size_t size) {
  const size_t offset = at % capacity_;
  const size_t first = std::min(size, capacity_ - offset);
  std::memcpy(ring_ + offset, data, first);
  std::memcpy(ring_, static_cast<const char*>(data) + first, size - first);
}

void QueueCore::CopyOut(uint64_t at, void* data, size_t size) const {
  const size_t offset = at % capacity_;
  const size_t first = std::min(size, capacity_ - offset);
  std::memcpy(data, ring_ + offset, first);
  std::memcpy(static_cast<char*>(data) + first, ring_, size - first);
}

QueueCore::Record QueueCore::Front() const {
  Record record;
  CopyOut(shared_->head, &record, sizeof(record));
  return record;
}

bool QueueCore::RecordFits(size_t footprint) const {
  return shared_->tail - shared_->head + footprint <= capacity_;
}

void QueueCore::Append(const Record& record, absl::string_view head,
                       absl::string_view body) {
  CopyIn(shared_->tail, &record, sizeof(record));
  if (record.spill_id == 0) {
    CopyIn(shared_->tail + sizeof(record), head.data(), head.size());
    CopyIn(shared_->tail + sizeof(record) + head.size(), body.data(),
           body.size());
  }
  shared_->items += 1;
  shared_->queued_bytes += record.size;
  shared_->tail += record.footprint();  // the commit
}

void QueueCore::Recover() {
  uint64_t items = 0;
  uint64_t bytes = 0;
  for (uint64_t at = shared_->head; at < shared_->tail;) {
    Record record;
    CopyOut(at, &record, sizeof(record));
    ++items;
    bytes += record.size;
    at += record.footprint();
  }
  shared_->items = items;
  shared_->queued_bytes = bytes;
}

void QueueCore::Unlock() { pthread_mutex_unlock(&shared_->mutex); }

absl::Status QueueCore::Put(absl::string_view head, absl::string_view body,
                            absl::Time deadline) {
  Record record{head.size() + body.size(), 0};
  auto spill = [&]() -> absl::Status {
    record.spill_id = shared_->next_spill.fetch_add(1);
    const std::string path = SpillPath(record.spill_id);
    UniqueFd file(RetryOnEintr([&] {
      return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }));
    if (!file.valid()) return ErrnoStatus(absl::StrCat("open ", path));
    int error = WriteFully(file.get(), head.data(), head.size());
    if (error == 0) error = WriteFully(file.get(), body.data(), body.size());
    if (error != 0) {
      ::unlink(path.c_str());
      return ErrnoStatus(error, absl::StrCat("write ", path));
    }
    return absl::OkStatus();
  };
  if (sizeof(Record) + record.size > kInlineMax) {
    if (absl::Status status = spill(); !status.ok()) return status;
  }
  if (LockRobust(&shared_->mutex)) Recover();
  while (true) {
    const bool over_bound = max_bytes_ > 0 && shared_->items > 0 &&
                            shared_->queued_bytes + record.size > max_bytes_;
    if (!over_bound && RecordFits(record.footprint())) break;
    if (!over_bound && record.spill_id == 0 && RecordFits(sizeof(Record))) {
      // The ring is full but a spilled record's header fits: spill it.
      Unlock();
      if (absl::Status status = spill(); !status.ok()) return status;
      if (LockRobust(&shared_->mutex)) Recover();
      continue;
    }
    // Over the bound, or the ring is full of headers: wait for a Get.
    if (absl::Now() >= deadline) {
      Unlock();
      if (record.spill_id != 0) ::unlink(SpillPath(record.spill_id).c_str());
      return absl::DeadlineExceededError(
          "Queue::Put: the queue stayed full until the deadline");
    }
    const uint32_t seen = shared_->get_seq.load();
    ++shared_->putters_waiting;
    Unlock();
    FutexWait(&shared_->get_seq, seen, deadline);
    if (LockRobust(&shared_->mutex)) Recover();
    --shared_->putters_waiting;
  }
  Append(record, head, body);
  shared_->put_seq.fetch_add(1);
  const bool wake = shared_->getters_waiting > 0;
  Unlock();
  if (wake) FutexWake(&shared_->put_seq, INT_MAX);
  return absl::OkStatus();
}

absl::StatusOr<std::string> QueueCore::Get(absl::Time deadline) {
  if (LockRobust(&shared_->mutex)) Recover();
  while (shared_->head == shared_->tail) {
    if (absl::Now() >= deadline) {
      Unlock();
      return absl::DeadlineExceededError("Queue::Get: no item before the deadline");
    }
    uint32_t seen = shared_->put_seq.load();
    Unlock();
    const bool changed = SpinWhile(&shared_->put_seq, seen);
    if (LockRobust(&shared_->mutex)) Recover();
    if (changed || shared_->head != shared_->tail) continue;
    seen = shared_->put_seq.load();
    ++shared_->getters_waiting;
    Unlock();
    FutexWait(&shared_->put_seq, seen, deadline);
    if (LockRobust(&shared_->mutex)) Recover();
    --shared_->getters_waiting;
  }
  const Record record = Front();
  std::string bytes;
  absl::Status read_status;
  if (record.spill_id == 0) {
    bytes.resize(record.size);
    CopyOut(shared_->head + sizeof(Record), bytes.data(), record.size);
  } else {
    // Read while holding the lock: a consumer that dies here leaves the
    // item at the head for the next Get().
    const std::string path = SpillPath(record.spill_id);
    UniqueFd file(RetryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
    if (!file.valid()) {
      read_status = ErrnoStatus(absl::StrCat("Queue::Get: open ", path));
    } else {
      bytes.resize(record.size);
      const ssize_t n = ReadFully(file.get(), bytes.data(), bytes.size());
      if (n != static_cast<ssize_t>(bytes.size())) {
        read_status = absl::DataLossError(absl::StrCat(
            "Queue::Get: ", path, " holds ", n < 0 ? 0 : n, " of ",
            record.size, " bytes"));
      }
    }
  }
  shared_->items -= 1;
  shared_->queued_bytes -= record.size;
  shared_->head += record.footprint();  // the commit
  shared_->get_seq.fetch_add(1);
  const bool wake = shared_->putters_waiting > 0;
  Unlock();
  if (record.spill_id != 0) ::unlink(SpillPath(record.spill_id).c_str());
  if (wake) FutexWake(&shared_->get_seq, INT_MAX);
  if (!read_status.ok()) return read_status;
  return bytes;
}

size_t QueueCore::size() const {
  if (LockRobust(&shared_->mutex)) const_cast<QueueCore*>(this)->Recover();
  const size_t items = shared_->items;
  pthread_mutex_unlock(&shared_->mutex);
  return items;
}

// ----------------------------------------------------------- Connection

absl::Status ConnectionCore::Send(const std::string& bytes) {
  if (!fd_.valid()) {
    return absl::FailedPreconditionError("Connection::Send: this end is closed");
  }
  uint64_t size = bytes.size();
  int error = SendFully(fd_.get(), reinterpret_cast<const char*>(&size),
                        sizeof(size), nullptr, 0);
  if (error == 0) error = SendFully(fd_.get(), bytes.data(), bytes.size(), nullptr, 0);
  if (error == EPIPE || error == ECONNRESET) {
    return absl::UnavailableError("Connection::Send: the other end is closed");
  }
  if (error != 0) return ErrnoStatus(error, "Connection::Send");
  return absl::OkStatus();
}

absl::StatusOr<std::string> ConnectionCore::Recv(absl::Duration timeout) {
  if (!fd_.valid()) {
    return absl::FailedPreconditionError("Connection::Recv: this end is closed");
  }
  if (!Poll(timeout)) {
    return absl::DeadlineExceededError("Connection::Recv: no message before the deadline");
  }
  uint64_t size = 0;
  ssize_t n = ReadFully(fd_.get(), reinterpret_cast<char*>(&size), sizeof(size));
  if (n < 0) return ErrnoStatus("Connection::Recv");
  if (n == 0) return absl::OutOfRangeError("Connection::Recv: the other end is closed");
  if (n != sizeof(size)) {
    return absl::DataLossError("Connection::Recv: the other end closed in the middle of a message");
  }
  std::string bytes;
  bytes.resize(size);
  n = ReadFully(fd_.get(), bytes.data(), bytes.size());
  if (n < 0) return ErrnoStatus("Connection::Recv");
  if (static_cast<uint64_t>(n) != size) {
    return absl::DataLossError("Connection::Recv: the other end closed in the middle of a message");
  }
  return bytes;
}

bool ConnectionCore::Poll(absl::Duration timeout) const {
  if (!fd_.valid()) return false;
  const absl::Time deadline = timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + timeout;
  while (true) {
    struct pollfd entry = {fd_.get(), POLLIN, 0};
    const int ready = ::poll(&entry, 1, PollMillis(deadline));
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace internal

// ----------------------------------------------------------------- Lock

Lock::Lock()
    : memory_(sizeof(pthread_mutex_t)),
      mutex_(static_cast<pthread_mutex_t*>(memory_.get())) {
  internal::InitRobustMutex(mutex_);
}

void Lock::lock() {
  const bool died = internal::LockRobust(mutex_);
  holder_died_.store(died, std::memory_order_relaxed);
}

bool Lock::try_lock() {
  const int error = pthread_mutex_trylock(mutex_);
  if (error == EBUSY) return false;
  if (error == EOWNERDEAD) {
    pthread_mutex_consistent(mutex_);
    holder_died_.store(true, std::memory_order_relaxed);
    return true;
  }
  if (error != 0) internal::ThrowErrno(error, "pthread_mutex_trylock");
  holder_died_.store(false, std::memory_order_relaxed);
  return true;
}

bool Lock::try_lock_for(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) {
    lock();
    return true;
  }
  const struct timespec deadline = absl::ToTimespec(absl::Now() + timeout);
  int error;
  do {
    error = pthread_mutex_timedlock(mutex_, &deadline);
  } while (error == EINTR);
  if (error == ETIMEDOUT) return false;
  if (error == EOWNERDEAD) {
    pthread_mutex_consistent(mutex_);
    holder_died_.store(true, std::memory_order_relaxed);
    return true;
  }
  if (error != 0) internal::ThrowErrno(error, "pthread_mutex_timedlock");
  holder_died_.store(false, std::memory_order_relaxed);
  return true;
}

void Lock::unlock() { pthread_mutex_unlock(mutex_); }

// ------------------------------------------------------------ Semaphore

Semaphore::Semaphore(int value)
    : memory_(sizeof(Shared)), shared_(new (memory_.get()) Shared()) {
  if (value < 0) {
    throw std::invalid_argument(
        absl::StrCat("parallel::Semaphore: the value must be >= 0, got ", value));
  }
  shared_->count.store(static_cast<uint32_t>(value));
}

bool Semaphore::try_acquire() {
  uint32_t count = shared_->count.load();
  while (count > 0) {
    if (shared_->count.compare_exchange_weak(count, count - 1)) return true;
  }
  return false;
}

bool Semaphore::try_acquire_for(absl::Duration timeout) {
  const absl::Time deadline = timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + timeout;
  while (!try_acquire()) {
    if (internal::SpinWhile(&shared_->count, 0)) continue;
    shared_->waiters.fetch_add(1);
    // Sleeps only while the count is 0; a release() in between changes it
    // (the kernel compares it under its own lock) or sees the waiter.
    const bool in_time = internal::FutexWait(&shared_->count, 0, deadline);
    shared_->waiters.fetch_sub(1);
    if (!in_time) return try_acquire();
  }
  return true;
}

void Semaphore::acquire() { try_acquire_for(absl::InfiniteDuration()); }

void Semaphore::release(int n) {
  if (n <= 0) return;
  shared_->count.fetch_add(static_cast<uint32_t>(n));
  if (shared_->waiters.load() > 0) internal::FutexWake(&shared_->count, n);
}

int Semaphore::value() const { return static_cast<int>(shared_->count.load()); }

// ---------------------------------------------------------------- Event

Event::Event() : memory_(sizeof(Shared)), shared_(new (memory_.get()) Shared()) {}

void Event::Set() {
  shared_->set.store(1);
  if (shared_->waiters.load() > 0) internal::FutexWake(&shared_->set, INT_MAX);
}

void Event::Clear() { shared_->set.store(0); }

bool Event::IsSet() const { return shared_->set.load() != 0; }

bool Event::Wait(absl::Duration timeout) const {
  const absl::Time deadline = timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + timeout;
  while (shared_->set.load() == 0) {
    if (internal::SpinWhile(&shared_->set, 0)) continue;
    shared_->waiters.fetch_add(1);
    const bool in_time = internal::FutexWait(&shared_->set, 0, deadline);
    shared_->waiters.fetch_sub(1);
    if (!in_time) return shared_->set.load() != 0;
  }
  return true;
}

}  // namespace parallel
