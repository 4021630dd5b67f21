// Fuzz target: the JSON and JUnit report writers on arbitrary step text.
// Whatever the bytes, both reports must be well-formed UTF-8; the JUnit one
// must hold only characters XML 1.0 allows, the JSON one no raw control
// character but its own line ends; and text that JSON can carry as it is
// (valid UTF-8 without controls, quotes or backslashes) must come out
// unchanged. The checks decode UTF-8 by Unicode's table of well-formed
// byte sequences, independently of reports.cc's decoder.
//
//   tools/fuzz/run.sh 30                          # libFuzzer with clang
//   bazel test //tools:reports_fuzzer_corpus_test # the seed corpus
// (tools/reports_parse_test.sh parses the same reports with Python's json
// and xml.etree.)

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tools/report_from_bytes.h"
#include "tools/reports.h"

namespace {

[[noreturn]] void Fail(const char* what, absl::string_view text) {
  std::fprintf(stderr, "%s:\n%.*s\n", what, static_cast<int>(text.size()),
               text.data());
  std::abort();
}

// Unicode 15, table 3-7: the well-formed UTF-8 byte sequences. Appends the
// characters to *chars; false at the first ill-formed byte.
bool WellFormed(absl::string_view text, std::vector<char32_t>* chars) {
  struct Row {
    unsigned char first_lo, first_hi, second_lo, second_hi;
    int length;
  };
  static constexpr Row kRows[] = {
      {0xC2, 0xDF, 0x80, 0xBF, 2}, {0xE0, 0xE0, 0xA0, 0xBF, 3},
      {0xE1, 0xEC, 0x80, 0xBF, 3}, {0xED, 0xED, 0x80, 0x9F, 3},
      {0xEE, 0xEF, 0x80, 0xBF, 3}, {0xF0, 0xF0, 0x90, 0xBF, 4},
      {0xF1, 0xF3, 0x80, 0xBF, 4}, {0xF4, 0xF4, 0x80, 0x8F, 4},
  };
  size_t i = 0;
  while (i < text.size()) {
    const auto at = [&](size_t k) {
      return static_cast<unsigned char>(text[i + k]);
    };
    if (at(0) < 0x80) {
      chars->push_back(at(0));
      ++i;
      continue;
    }
    const Row* row = nullptr;
    for (const Row& r : kRows) {
      if (at(0) >= r.first_lo && at(0) <= r.first_hi) row = &r;
    }
    if (row == nullptr || i + row->length > text.size() ||
        at(1) < row->second_lo || at(1) > row->second_hi) {
      return false;
    }
    char32_t c = at(0) & (0xFF >> (row->length + 1));
    for (int k = 1; k < row->length; ++k) {
      if (k > 1 && (at(k) < 0x80 || at(k) > 0xBF)) return false;
      c = (c << 6) | (at(k) & 0x3F);
    }
    chars->push_back(c);
    i += row->length;
  }
  return true;
}

bool XmlAllows(char32_t c) {
  return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
         (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

// Whether JSON carries `text` unchanged inside a string.
bool JsonVerbatim(absl::string_view text) {
  std::vector<char32_t> chars;
  if (!WellFormed(text, &chars)) return false;
  for (char32_t c : chars) {
    if (c < 0x20 || c == '"' || c == '\\') return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  const parallel::RunReport report = tools::ReportFromBytes(bytes);

  const std::string json = tools::JsonReport(report);
  std::vector<char32_t> chars;
  if (!WellFormed(json, &chars)) Fail("JSON report is not UTF-8", json);
  for (char32_t c : chars) {
    if (c < 0x20 && c != '\n') Fail("raw control character in JSON", json);
  }
  for (const parallel::StepReport& step : report.steps) {
    if (JsonVerbatim(step.name) &&
        json.find(absl::StrCat("\"command\": \"", step.name, "\"")) ==
            std::string::npos) {
      Fail("JSON changed text it can carry", json);
    }
  }

  const std::string xml = tools::JunitReport(report);
  chars.clear();
  if (!WellFormed(xml, &chars)) Fail("JUnit report is not UTF-8", xml);
  for (char32_t c : chars) {
    if (!XmlAllows(c)) Fail("character XML 1.0 cannot hold", xml);
  }
  return 0;
}
