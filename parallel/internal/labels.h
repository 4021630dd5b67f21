// Names of task-runner inputs and executor tasks in failures: the kind, the
// index and, when they print shortly, the arguments.
//
// Thread-safety: pure functions.

#ifndef PARALLEL_INTERNAL_LABELS_H_
#define PARALLEL_INTERNAL_LABELS_H_

#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace parallel {
namespace internal {

// Short text for an argument, or "…".
template <typename T>
std::string DescribeArg(const T& arg) {
  using D = std::decay_t<T>;
  if constexpr (std::is_same_v<D, bool>) {
    return arg ? "true" : "false";
  } else if constexpr (std::is_arithmetic_v<D>) {
    return absl::StrCat(arg);
  } else if constexpr (std::is_convertible_v<const D&, absl::string_view>) {
    return absl::StrCat("\"", absl::string_view(arg), "\"");
  } else {
    return "…";
  }
}

// "<kind> 3", or "<kind> 3 (\"arm64\", 8)" when the arguments print shortly.
template <typename... Args>
std::string ArgsLabel(absl::string_view kind, size_t index,
                      const Args&... args) {
  std::string label = absl::StrCat(kind, " ", index);
  if constexpr (sizeof...(Args) > 0) {
    std::vector<std::string> parts = {DescribeArg(args)...};
    std::string joined;
    for (size_t i = 0; i < parts.size(); ++i) {
      absl::StrAppend(&joined, i > 0 ? ", " : "", parts[i]);
    }
    if (joined.size() <= 48) absl::StrAppend(&label, " (", joined, ")");
  }
  return label;
}

}  // namespace internal
}  // namespace parallel

#endif  // PARALLEL_INTERNAL_LABELS_H_
