// parallel/report_text.h — text for files other tools read (JSON, XML,
// HTML): escaping that always yields valid UTF-8 whatever bytes a step
// printed, and atomic file writes. Used by trace.h and by the tools' JSON
// and JUnit reports.
//
// Thread-safety: thread-safe (no state).

#ifndef PARALLEL_REPORT_TEXT_H_
#define PARALLEL_REPORT_TEXT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace parallel {

// `text` as a JSON string literal, quoted, always valid UTF-8: bytes that are
// not become U+FFFD.
std::string JsonString(absl::string_view text);

// XML (and HTML) character data, or an attribute value with `attribute`, as
// valid UTF-8 of characters XML 1.0 allows: anything else becomes U+FFFD.
// In attributes, tabs and line ends are written as references so that
// parsers do not fold them.
std::string XmlText(absl::string_view text, bool attribute = false);

// The longest prefix of `text` of at most `size` bytes that does not end
// inside a multi-byte UTF-8 character (for cutting long names).
absl::string_view Utf8Prefix(absl::string_view text, size_t size);

// Writes `text` to a temp file beside `path` ("<path>.tmp.<pid>"), then
// renames it over `path`: a reader sees the old file or the whole new one.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view text);

}  // namespace parallel

#endif  // PARALLEL_REPORT_TEXT_H_
