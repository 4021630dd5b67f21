// parallel/codec.h — encoding values so they can cross a process boundary.
//
// Return values of steps, arguments of BackgroundTaskRunner::Put and results of
// RunTasksInProcessPool travel between processes as bytes. `parallel::Codec<T>`
// turns a T into bytes and back. It is built in for bool, integers, floating
// point, enums, std::string, std::vector, std::optional, std::pair,
// std::tuple, std::map, std::set, absl::Status, absl::StatusOr<T>, and any type
// with protobuf's `bool SerializeToString(std::string*) const` and
// `bool ParseFromString(const std::string&)` (detected by those methods; no
// protobuf dependency).
//
// Example:
//
//   std::string bytes = parallel::Encode(std::map<std::string, int>{{"a", 1}});
//   absl::StatusOr<std::map<std::string, int>> back =
//       parallel::Decode<std::map<std::string, int>>(bytes);
//   absl::Status ok = parallel::DecodeInto(bytes, &some_map);  // same, in
//   place
//
// The one hook for a user type is a specialization of Codec, in namespace
// parallel, with two static functions:
//
//   struct Point { int x, y; };
//   template <> struct parallel::Codec<Point> {
//     static void Encode(const Point& p, std::string* out) {
//       parallel::Codec<int>::Encode(p.x, out);
//       parallel::Codec<int>::Encode(p.y, out);
//     }
//     // Consumes bytes from the front of *in; false if they are not a Point.
//     static bool Decode(absl::string_view* in, Point* out) {
//       return parallel::Codec<int>::Decode(in, &out->x) &&
//              parallel::Codec<int>::Decode(in, &out->y);
//     }
//   };
//
// Using a type that has no Codec is a compile-time error whose "required from"
// context names `parallel::Codec<YourType>`.
//
// Decoding never trusts its input: a truncated or corrupt record makes Decode
// return false (or a non-OK status), never crash or allocate more than the
// input could hold. Values of any size work; lengths are 64-bit varints.
//
// Thread-safety: all functions are pure and may be called from any thread.

#ifndef PARALLEL_CODEC_H_
#define PARALLEL_CODEC_H_

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parallel {

template <typename T, typename Enable = void>
struct Codec {
  static_assert(
      sizeof(T) == 0,
      "parallel::Codec<T> is not defined for this type: see the "
      "'required from' lines for T, and parallel/codec.h for the hook "
      "that makes a type encodable");
};

namespace codec_internal {

inline void PutVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

inline bool GetVarint(absl::string_view* in, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63; shift += 7) {
    if (in->empty()) return false;
    const auto byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    if (shift == 63 && byte > 1) return false;  // would overflow 64 bits
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

// Reads a count of elements that follow; every element takes at least one
// byte, so a count larger than what is left is corrupt. This keeps a forged
// count from reserving memory the input could never fill.
inline bool GetCount(absl::string_view* in, size_t* count) {
  uint64_t value;
  if (!GetVarint(in, &value) || value > in->size()) return false;
  *count = static_cast<size_t>(value);
  return true;
}

template <typename T, typename = void>
struct IsProtoLike : std::false_type {};
template <typename T>
struct IsProtoLike<
    T, std::void_t<decltype(std::declval<const T&>().SerializeToString(
                       std::declval<std::string*>())),
                   decltype(std::declval<T&>().ParseFromString(
                       std::declval<const std::string&>()))>> : std::true_type {
};

}  // namespace codec_internal

// bool: one byte, 0 or 1; anything else is corrupt.
template <>
struct Codec<bool> {
  static void Encode(bool value, std::string* out) {
    out->push_back(value ? 1 : 0);
  }
  static bool Decode(absl::string_view* in, bool* out) {
    if (in->empty() || static_cast<uint8_t>(in->front()) > 1) return false;
    *out = in->front() == 1;
    in->remove_prefix(1);
    return true;
  }
};

// Integers (and char types): zigzag varints, range-checked on decode.
template <typename T>
struct Codec<
    T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static void Encode(T value, std::string* out) {
    if constexpr (std::is_signed_v<T>) {
      const auto wide = static_cast<int64_t>(value);
      codec_internal::PutVarint((static_cast<uint64_t>(wide) << 1) ^
                                    static_cast<uint64_t>(wide >> 63),
                                out);
    } else {
      codec_internal::PutVarint(static_cast<uint64_t>(value), out);
    }
  }
  static bool Decode(absl::string_view* in, T* out) {
    uint64_t raw;
    if (!codec_internal::GetVarint(in, &raw)) return false;
    if constexpr (std::is_signed_v<T>) {
      const auto wide = static_cast<int64_t>((raw >> 1) ^ (~(raw & 1) + 1));
      if (wide < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          wide > static_cast<int64_t>(std::numeric_limits<T>::max())) {
        return false;
      }
      *out = static_cast<T>(wide);
    } else {
      if (raw > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        return false;
      }
      *out = static_cast<T>(raw);
    }
    return true;
  }
};

// Floating point: the bytes of the value, so NaNs and infinities survive.
template <typename T>
struct Codec<T, std::enable_if_t<std::is_floating_point_v<T>>> {
  static void Encode(T value, std::string* out) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out->append(bytes, sizeof(T));
  }
  static bool Decode(absl::string_view* in, T* out) {
    if (in->size() < sizeof(T)) return false;
    std::memcpy(out, in->data(), sizeof(T));
    in->remove_prefix(sizeof(T));
    return true;
  }
};

// Enums: their underlying integer.
template <typename T>
struct Codec<T, std::enable_if_t<std::is_enum_v<T>>> {
  using Underlying = std::underlying_type_t<T>;
  static void Encode(T value, std::string* out) {
    Codec<Underlying>::Encode(static_cast<Underlying>(value), out);
  }
  static bool Decode(absl::string_view* in, T* out) {
    Underlying value;
    if (!Codec<Underlying>::Decode(in, &value)) return false;
    *out = static_cast<T>(value);
    return true;
  }
};

namespace codec_internal {
// A std::string's encoding is this head (its size) and then its bytes, so a
// big one can be written from where it is, without an encoded copy.
inline void PutStringHead(size_t size, std::string* out) {
  PutVarint(size, out);
}
// Turns `bytes`, the whole encoding of one std::string, into that string
// in place (its buffer reused: nothing the size of the value is
// allocated). False, with `bytes` untouched, if it is not one.
inline bool DecodeStringInPlace(std::string* bytes) {
  absl::string_view view(*bytes);
  uint64_t size;
  if (!GetVarint(&view, &size) || size != view.size()) return false;
  bytes->erase(0, bytes->size() - view.size());
  return true;
}
}  // namespace codec_internal

template <>
struct Codec<std::string> {
  static void Encode(const std::string& value, std::string* out) {
    codec_internal::PutStringHead(value.size(), out);
    out->append(value);
  }
  static bool Decode(absl::string_view* in, std::string* out) {
    uint64_t size;
    if (!codec_internal::GetVarint(in, &size) || size > in->size())
      return false;
    out->assign(in->data(), static_cast<size_t>(size));
    in->remove_prefix(static_cast<size_t>(size));
    return true;
  }
};

template <typename T, typename A>
struct Codec<std::vector<T, A>> {
  static void Encode(const std::vector<T, A>& value, std::string* out) {
    codec_internal::PutVarint(value.size(), out);
    for (const auto& element : value) Codec<T>::Encode(element, out);
  }
  static bool Decode(absl::string_view* in, std::vector<T, A>* out) {
    size_t count;
    if (!codec_internal::GetCount(in, &count)) return false;
    out->clear();
    out->reserve(count);
    for (size_t i = 0; i < count; ++i) {
      T element{};
      if (!Codec<T>::Decode(in, &element)) return false;
      out->push_back(std::move(element));
    }
    return true;
  }
};

template <typename T>
struct Codec<std::optional<T>> {
  static void Encode(const std::optional<T>& value, std::string* out) {
    Codec<bool>::Encode(value.has_value(), out);
    if (value.has_value()) Codec<T>::Encode(*value, out);
  }
  static bool Decode(absl::string_view* in, std::optional<T>* out) {
    bool present;
    if (!Codec<bool>::Decode(in, &present)) return false;
    if (!present) {
      out->reset();
      return true;
    }
    T value{};
    if (!Codec<T>::Decode(in, &value)) return false;
    *out = std::move(value);
    return true;
  }
};

template <typename A, typename B>
struct Codec<std::pair<A, B>> {
  static void Encode(const std::pair<A, B>& value, std::string* out) {
    Codec<std::remove_const_t<A>>::Encode(value.first, out);
    Codec<B>::Encode(value.second, out);
  }
  static bool Decode(absl::string_view* in, std::pair<A, B>* out) {
    return Codec<std::remove_const_t<A>>::Decode(
               in, const_cast<std::remove_const_t<A>*>(&out->first)) &&
           Codec<B>::Decode(in, &out->second);
  }
};

template <typename... Ts>
struct Codec<std::tuple<Ts...>> {
  static void Encode(const std::tuple<Ts...>& value, std::string* out) {
    std::apply([out](const auto&... e) { (Codec<Ts>::Encode(e, out), ...); },
               value);
  }
  static bool Decode(absl::string_view* in, std::tuple<Ts...>* out) {
    return std::apply(
        [in](auto&... e) { return (Codec<Ts>::Decode(in, &e) && ...); }, *out);
  }
};

template <typename K, typename V, typename C, typename A>
struct Codec<std::map<K, V, C, A>> {
  static void Encode(const std::map<K, V, C, A>& value, std::string* out) {
    codec_internal::PutVarint(value.size(), out);
    for (const auto& [k, v] : value) {
      Codec<K>::Encode(k, out);
      Codec<V>::Encode(v, out);
    }
  }
  static bool Decode(absl::string_view* in, std::map<K, V, C, A>* out) {
    size_t count;
    if (!codec_internal::GetCount(in, &count)) return false;
    out->clear();
    for (size_t i = 0; i < count; ++i) {
      K k{};
      V v{};
      if (!Codec<K>::Decode(in, &k) || !Codec<V>::Decode(in, &v)) return false;
      out->emplace_hint(out->end(), std::move(k), std::move(v));
    }
    return true;
  }
};

template <typename K, typename C, typename A>
struct Codec<std::set<K, C, A>> {
  static void Encode(const std::set<K, C, A>& value, std::string* out) {
    codec_internal::PutVarint(value.size(), out);
    for (const auto& k : value) Codec<K>::Encode(k, out);
  }
  static bool Decode(absl::string_view* in, std::set<K, C, A>* out) {
    size_t count;
    if (!codec_internal::GetCount(in, &count)) return false;
    out->clear();
    for (size_t i = 0; i < count; ++i) {
      K k{};
      if (!Codec<K>::Decode(in, &k)) return false;
      out->emplace_hint(out->end(), std::move(k));
    }
    return true;
  }
};

// absl::Status: code and message (payloads are not carried).
template <>
struct Codec<absl::Status> {
  static void Encode(const absl::Status& value, std::string* out) {
    codec_internal::PutVarint(static_cast<uint64_t>(value.code()), out);
    Codec<std::string>::Encode(std::string(value.message()), out);
  }
  static bool Decode(absl::string_view* in, absl::Status* out) {
    uint64_t code;
    std::string message;
    if (!codec_internal::GetVarint(in, &code) || code > 16 ||
        !Codec<std::string>::Decode(in, &message)) {
      return false;
    }
    *out = absl::Status(static_cast<absl::StatusCode>(code), message);
    return true;
  }
};

template <typename T>
struct Codec<absl::StatusOr<T>> {
  static void Encode(const absl::StatusOr<T>& value, std::string* out) {
    Codec<bool>::Encode(value.ok(), out);
    if (value.ok()) {
      Codec<T>::Encode(*value, out);
    } else {
      Codec<absl::Status>::Encode(value.status(), out);
    }
  }
  static bool Decode(absl::string_view* in, absl::StatusOr<T>* out) {
    bool ok;
    if (!Codec<bool>::Decode(in, &ok)) return false;
    if (ok) {
      T value{};
      if (!Codec<T>::Decode(in, &value)) return false;
      *out = std::move(value);
      return true;
    }
    absl::Status status;
    if (!Codec<absl::Status>::Decode(in, &status) || status.ok()) return false;
    *out = std::move(status);
    return true;
  }
};

// Protobuf messages and anything else with SerializeToString/ParseFromString.
template <typename T>
struct Codec<T, std::enable_if_t<codec_internal::IsProtoLike<T>::value>> {
  static void Encode(const T& value, std::string* out) {
    std::string bytes;
    value.SerializeToString(&bytes);
    Codec<std::string>::Encode(bytes, out);
  }
  static bool Decode(absl::string_view* in, T* out) {
    std::string bytes;
    return Codec<std::string>::Decode(in, &bytes) &&
           out->ParseFromString(bytes);
  }
};

// Encodes one value into a fresh string.
template <typename T>
std::string Encode(const T& value) {
  std::string out;
  Codec<T>::Encode(value, &out);
  return out;
}

// Decodes exactly one T from `bytes` into *out. Returns DataLossError if the
// bytes are truncated, corrupt, or followed by anything else.
template <typename T>
absl::Status DecodeInto(absl::string_view bytes, T* out) {
  if (!Codec<T>::Decode(&bytes, out)) {
    return absl::DataLossError("parallel::Decode: truncated or corrupt value");
  }
  if (!bytes.empty()) {
    return absl::DataLossError("parallel::Decode: trailing bytes after value");
  }
  return absl::OkStatus();
}

// As DecodeInto, returning the value. (For T = absl::Status use DecodeInto:
// a StatusOr<absl::Status> cannot tell a decoding error from a decoded one.)
template <typename T>
absl::StatusOr<T> Decode(absl::string_view bytes) {
  static_assert(!std::is_same_v<T, absl::Status>,
                "use parallel::DecodeInto to decode an absl::Status");
  T value{};
  if (absl::Status status = DecodeInto(bytes, &value); !status.ok()) {
    return status;
  }
  return value;
}

}  // namespace parallel

#endif  // PARALLEL_CODEC_H_
