// parallel/sync.h — Python multiprocessing's synchronization and data
// passing, between processes of this library (steps, task inputs, executor
// tasks, parallel::Process children) and between threads.
//
//   parallel::Lock lock;                      // robust: survives a dead holder
//   parallel::Queue<std::string> progress;    // any Codec type, any size
//   parallel::Event stop;
//   parallel::Value<int64_t> done(0);
//   parallel::RunParallelSteps({
//       [&] { for (...) { if (stop.IsSet()) return; progress.Put("…"); } },
//       [&] { std::lock_guard<parallel::Lock> hold(lock); UseTheDevice(); },
//       [&] { done.Update([](int64_t n) { return n + 1; }); },
//   });
//
// Create them before the processes that use them start: they live in shared
// memory (an anonymous MAP_SHARED mapping) that forked children inherit, as
// with Python's fork start method. They are neither copyable nor movable.
// A process that did not inherit one (an exec'ed command) cannot use it.
//
// Waiting is done in the kernel (futexes; robust process-shared pthread
// mutexes for Lock, Value, Array and Queue) after a short bounded spin
// (~10 us), never by polling with sleeps.
// Every timeout is a duration measured from the call
// (absl::InfiniteDuration() waits forever).
//
// What happens when a process dies at the wrong moment:
// - Lock (and the locks inside Value, Array, Queue): the next locker gets it
//   and is told (Lock::holder_died()); nothing deadlocks.
// - Semaphore: a permit held by a process that died is not given back (as
//   with Python's); release() it yourself if you know.
// - Queue: an item is removed only once a Get() has read all of it, so a
//   consumer that dies in the middle of Get() loses nothing (the item goes
//   to the next Get()); a producer may exit with items still queued (no
//   feeder thread to join: Python's join-before-drain trap cannot happen).
//
// Thread-safety: every class here is thread-safe, between processes and
// between threads of one process, except Connection (one sender and one
// receiver at a time per end, as Python's).

#ifndef PARALLEL_SYNC_H_
#define PARALLEL_SYNC_H_

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "parallel/codec.h"
#include "parallel/internal/fd.h"

namespace parallel {
namespace internal {

// An anonymous MAP_SHARED mapping of at least `bytes`, zero-filled,
// inherited across fork; unmapped by the destructor. Throws
// std::system_error if the kernel refuses it.
class SharedMapping {
 public:
  explicit SharedMapping(size_t bytes);
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  ~SharedMapping();
  void* get() const { return address_; }
  size_t size() const { return size_; }

 private:
  void* address_;
  size_t size_;
};

// A robust, process-shared pthread mutex at `mutex` (in shared memory).
void InitRobustMutex(pthread_mutex_t* mutex);
// Locks it (a few try-locks first, then the blocking lock); true when the
// previous holder died holding it (the mutex is made consistent again
// before returning).
bool LockRobust(pthread_mutex_t* mutex);

// Waits while *word == expected, at most until `deadline`; returns false
// once the deadline has passed. May return early (spuriously): callers
// re-check their condition.
bool FutexWait(std::atomic<uint32_t>* word, uint32_t expected,
               absl::Time deadline);
// Spins briefly (bounded, ~10 us) while *word == expected; true if it
// changed. Waiters call it before FutexWait.
bool SpinWhile(const std::atomic<uint32_t>* word, uint32_t expected);
// Wakes up to `count` waiters on `word`.
void FutexWake(std::atomic<uint32_t>* word, int count);

// The untyped halves of Queue<T> and Connection<T>.
class QueueCore {
 public:
  explicit QueueCore(size_t max_bytes);
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;
  ~QueueCore();
  // Queues one item: the bytes of `head` and then those of `body`.
  absl::Status Put(absl::string_view head, absl::string_view body,
                   absl::Time deadline);
  absl::StatusOr<std::string> Get(absl::Time deadline);
  size_t size() const;

 private:
  struct Shared;
  struct Record;
  void Recover();  // after a holder died: recount from the records
  bool RecordFits(size_t payload) const;
  void Append(const Record& record, absl::string_view head,
              absl::string_view body);
  Record Front() const;
  void CopyIn(uint64_t at, const void* data, size_t size);
  void CopyOut(uint64_t at, void* data, size_t size) const;
  std::string SpillPath(uint64_t id) const;
  void Unlock();

  const size_t max_bytes_;
  const pid_t owner_;
  SharedMapping memory_;
  Shared* shared_;
  char* ring_;
  size_t capacity_;
  std::string spill_dir_;
};

class ConnectionCore {
 public:
  explicit ConnectionCore(int fd) : fd_(fd) {}
  absl::Status Send(const std::string& bytes);
  absl::StatusOr<std::string> Recv(absl::Duration timeout);
  bool Poll(absl::Duration timeout) const;
  void Close() { fd_.reset(); }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

// What Queue::Get and Connection::Recv return for the bytes they got: the
// value, or kDataLoss naming `what` if they are not a T. A std::string is
// decoded in the buffer it was read into (a 1 GiB item is never copied).
template <typename T>
absl::StatusOr<T> DecodeReceived(absl::StatusOr<std::string> bytes,
                                 absl::string_view what) {
  if (!bytes.ok()) return bytes.status();
  if constexpr (std::is_same_v<T, std::string>) {
    if (codec_internal::DecodeStringInPlace(&*bytes)) return bytes;
  }
  absl::StatusOr<T> value = Decode<T>(*bytes);
  if (!value.ok()) {
    return absl::DataLossError(absl::StrCat(
        what, " is not a valid value: ", value.status().message()));
  }
  return value;
}

}  // namespace internal

// A mutex for processes and threads: lock(), unlock(), try_lock() (so
// std::lock_guard and std::unique_lock work). Robust: when a process or
// thread dies holding it, the next lock() gets it and holder_died() says
// so — whatever it guarded may be half-updated. Not recursive: locking it
// twice from one thread deadlocks, as std::mutex.
class Lock {
 public:
  Lock();
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  void lock();
  bool try_lock();
  // Waits at most `timeout`; false if it did not get it.
  bool try_lock_for(absl::Duration timeout);
  void unlock();
  // Whether the holder before this process's (or thread's) last successful
  // lock died holding it. Read it while holding the lock.
  bool holder_died() const { return holder_died_.load(std::memory_order_relaxed); }

 private:
  internal::SharedMapping memory_;
  pthread_mutex_t* mutex_;
  std::atomic<bool> holder_died_{false};
};

// A counting semaphore for processes and threads (Python's Semaphore;
// C++20's counting_semaphore names).
class Semaphore {
 public:
  // `value` >= 0 (else std::invalid_argument).
  explicit Semaphore(int value);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  void acquire();
  bool try_acquire();
  bool try_acquire_for(absl::Duration timeout);
  void release(int n = 1);
  int value() const;

 private:
  struct Shared {
    std::atomic<uint32_t> count;
    std::atomic<uint32_t> waiters;
  };
  internal::SharedMapping memory_;
  Shared* shared_;
};

// A flag that processes and threads wait for (Python's Event).
class Event {
 public:
  Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void Set();
  void Clear();
  bool IsSet() const;
  // True once the flag is set (at once if it is); false after `timeout`.
  bool Wait(absl::Duration timeout = absl::InfiniteDuration()) const;

 private:
  struct Shared {
    std::atomic<uint32_t> set;
    std::atomic<uint32_t> waiters;
  };
  internal::SharedMapping memory_;
  Shared* shared_;
};

// One trivially copyable T in shared memory, with a Lock (Python's
// Value('i', 0)). Load() and Store() take the lock; Update() applies a
// function under it (n += 1 from many processes loses nothing).
template <typename T>
class Value {
  static_assert(std::is_trivially_copyable<T>::value,
                "parallel::Value<T> needs a trivially copyable T (it lives "
                "in shared memory); pass other types through a Queue");

 public:
  explicit Value(T initial = T())
      : memory_(sizeof(T)), value_(static_cast<T*>(memory_.get())) {
    *value_ = initial;
  }
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;

  T Load() const {
    std::lock_guard<Lock> hold(lock_);
    return *value_;
  }
  void Store(const T& value) {
    std::lock_guard<Lock> hold(lock_);
    *value_ = value;
  }
  // *value = f(*value) under the lock; returns the new value.
  template <typename F>
  T Update(F f) {
    std::lock_guard<Lock> hold(lock_);
    *value_ = f(*value_);
    return *value_;
  }
  // The lock, for several operations at once (Python's get_lock()).
  Lock& get_lock() const { return lock_; }
  // The value itself: only while holding get_lock().
  T* get() const { return value_; }

 private:
  mutable Lock lock_;
  internal::SharedMapping memory_;
  T* value_;
};

// `size` trivially copyable T in shared memory, with one Lock (Python's
// Array('d', 10)).
template <typename T>
class Array {
  static_assert(std::is_trivially_copyable<T>::value,
                "parallel::Array<T> needs a trivially copyable T");

 public:
  explicit Array(size_t size, T initial = T())
      : memory_(sizeof(T) * (size == 0 ? 1 : size)),
        data_(static_cast<T*>(memory_.get())),
        size_(size) {
    for (size_t i = 0; i < size_; ++i) data_[i] = initial;
  }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  size_t size() const { return size_; }
  // Index out of range: std::out_of_range.
  T Load(size_t i) const {
    Check(i);
    std::lock_guard<Lock> hold(lock_);
    return data_[i];
  }
  void Store(size_t i, const T& value) {
    Check(i);
    std::lock_guard<Lock> hold(lock_);
    data_[i] = value;
  }
  Lock& get_lock() const { return lock_; }
  // The elements: only while holding get_lock().
  T* data() const { return data_; }

 private:
  void Check(size_t i) const;

  mutable Lock lock_;
  internal::SharedMapping memory_;
  T* data_;
  size_t size_;
};

// A FIFO of T (any type with a parallel::Codec) between any number of
// producer and consumer processes and threads. Small items travel through a
// 4 MiB ring in shared memory; items over 64 KiB, and any item when the
// ring is full, are spilled to a file in a directory the Queue makes at
// construction under $TMPDIR (else /tmp, named parallel-queue-XXXXXX) and
// removes when the process that made it destroys it. So Put() never blocks
// on an unbounded queue, values of any size work (1 GiB is tested), and a
// producer can exit with items queued. If the process that made it is
// killed (SIGKILL), the directory and the items spilled in it stay.
template <typename T>
class Queue {
 public:
  // `max_bytes` > 0 bounds the encoded bytes queued: Put() waits while the
  // queue holds items and this one would go over it. 0 = unbounded.
  explicit Queue(size_t max_bytes = 0) : core_(max_bytes) {}
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // Throws std::system_error if the item cannot be stored (the spill
  // directory is full or gone).
  void Put(const T& value) {
    absl::Status status = PutValue(value, absl::InfiniteFuture());
    if (!status.ok()) ThrowPutFailure(status);
  }
  // With a bound: waits at most `timeout` for room; kDeadlineExceeded then.
  absl::Status PutFor(const T& value, absl::Duration timeout) {
    return PutValue(value, absl::Now() + timeout);
  }
  // The oldest item; kDeadlineExceeded after `timeout` with none;
  // kDataLoss if its bytes are not a T (e.g. a Queue<T> read as another
  // type through a fork's copy of different code).
  absl::StatusOr<T> Get(absl::Duration timeout = absl::InfiniteDuration()) {
    absl::StatusOr<std::string> bytes = core_.Get(
        timeout == absl::InfiniteDuration() ? absl::InfiniteFuture()
                                            : absl::Now() + timeout);
    return internal::DecodeReceived<T>(std::move(bytes),
                                       "Queue::Get: an item");
  }
  // Items queued now (a snapshot).
  size_t size() const { return core_.size(); }

 private:
  [[noreturn]] static void ThrowPutFailure(const absl::Status& status);
  // A string goes from where it is (its codec head, then its bytes): a big
  // one is never copied into an encoding first.
  absl::Status PutValue(const T& value, absl::Time deadline) {
    if constexpr (std::is_same_v<T, std::string>) {
      std::string head;
      codec_internal::PutStringHead(value.size(), &head);
      return core_.Put(head, value, deadline);
    } else {
      return core_.Put(Encode(value), absl::string_view(), deadline);
    }
  }

  internal::QueueCore core_;
};

// One end of a Pipe<T>(): Send() and Recv() values of T (any Codec type,
// any size) to and from the other end, in order. When the other end is
// closed in every process that had it, Recv() returns kOutOfRange ("the
// other end is closed") and Send() returns kUnavailable — never a hang or
// a SIGPIPE death. As with Python's, close the end a process does not use
// (a child inherits both): an end still open in another process keeps the
// pipe alive. One sender and one receiver at a time per end.
template <typename T>
class Connection {
 public:
  Connection(Connection&&) noexcept = default;
  Connection& operator=(Connection&&) noexcept = default;

  absl::Status Send(const T& value) { return core_.Send(Encode(value)); }
  // kDeadlineExceeded if no message starts within `timeout` (a message
  // that has started is read to its end); kOutOfRange at the end.
  absl::StatusOr<T> Recv(absl::Duration timeout = absl::InfiniteDuration()) {
    return internal::DecodeReceived<T>(core_.Recv(timeout),
                                       "Connection::Recv: a message");
  }
  // Whether Recv() would return at once (a message, or the end).
  bool Poll(absl::Duration timeout = absl::ZeroDuration()) const {
    return core_.Poll(timeout);
  }
  // Closes this end in this process.
  void Close() { core_.Close(); }
  // The socket, for poll() with other descriptors.
  int fd() const { return core_.fd(); }

 private:
  template <typename U>
  friend std::pair<Connection<U>, Connection<U>> Pipe();
  explicit Connection(int fd) : core_(fd) {}

  internal::ConnectionCore core_;
};

namespace internal {
std::pair<int, int> DuplexSocketPair();  // throws std::system_error
[[noreturn]] void ThrowQueuePutFailure(const absl::Status& status);
[[noreturn]] void ThrowArrayIndex(size_t i, size_t size);
}  // namespace internal

// A duplex pair of connected ends (Python's Pipe()).
template <typename T>
std::pair<Connection<T>, Connection<T>> Pipe() {
  std::pair<int, int> fds = internal::DuplexSocketPair();
  return {Connection<T>(fds.first), Connection<T>(fds.second)};
}

template <typename T>
void Queue<T>::ThrowPutFailure(const absl::Status& status) {
  internal::ThrowQueuePutFailure(status);
}

template <typename T>
void Array<T>::Check(size_t i) const {
  if (i >= size_) internal::ThrowArrayIndex(i, size_);
}

}  // namespace parallel

#endif  // PARALLEL_SYNC_H_
