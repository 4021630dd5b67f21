#include "tools/reports.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tools {
namespace {

std::string StatusWord(const parallel::StepReport& step) {
  switch (step.outcome) {
    case parallel::StepOutcome::kSucceeded:
      return "passed";
    case parallel::StepOutcome::kFailed:
      return "failed";
    case parallel::StepOutcome::kHalted:
      return step.started ? "halted" : "not_started";
    case parallel::StepOutcome::kInterrupted:
      return "interrupted";
  }
  return "unknown";
}

constexpr char32_t kReplacement = 0xFFFD;

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// Decodes one character of strict UTF-8 at the front of *text and removes
// it; a byte that does not start a valid character (overlong forms,
// surrogates, beyond U+10FFFF, cut sequences) is removed alone and decodes
// as U+FFFD.
char32_t TakeChar(absl::string_view* text) {
  const auto byte = [text](size_t i) {
    return static_cast<unsigned char>((*text)[i]);
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) {
    text->remove_prefix(1);
    return lead;
  }
  // By the lead byte: the sequence's length, the lead's payload bits, and
  // the smallest character that needs that length (shorter is overlong).
  struct Form {
    unsigned char mask, value, payload;
    size_t length;
    char32_t min;
  };
  static constexpr Form kForms[] = {{0xE0, 0xC0, 0x1F, 2, 0x80},
                                    {0xF0, 0xE0, 0x0F, 3, 0x800},
                                    {0xF8, 0xF0, 0x07, 4, 0x10000}};
  size_t length = 0;
  char32_t c = 0;
  char32_t min = 0;
  for (const Form& form : kForms) {
    if ((lead & form.mask) == form.value) {
      length = form.length;
      c = lead & form.payload;
      min = form.min;
    }
  }
  bool valid = length != 0 && text->size() >= length;
  for (size_t i = 1; valid && i < length; ++i) {
    valid = (byte(i) & 0xC0) == 0x80;
    c = (c << 6) | (byte(i) & 0x3F);
  }
  if (!valid || c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
    text->remove_prefix(1);
    return kReplacement;
  }
  text->remove_prefix(length);
  return c;
}

// Whether XML 1.0 can hold the character at all (even escaped, it cannot
// hold most C0 controls, U+FFFE or U+FFFF).
bool XmlChar(char32_t c) {
  return c == '\t' || c == '\n' || c == '\r' || (c >= 0x20 && c <= 0xD7FF) ||
         (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

// XML character data or an attribute value, as valid UTF-8 of characters
// XML 1.0 allows: anything else becomes U+FFFD. In attributes, tabs and
// line ends are written as references so that parsers do not fold them.
std::string XmlText(absl::string_view text, bool attribute = false) {
  std::string out;
  while (!text.empty()) {
    const char32_t c = TakeChar(&text);
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '\t':
      case '\n':
      case '\r':
        if (attribute) {
          absl::StrAppend(&out, "&#", static_cast<int>(c), ";");
        } else {
          out.push_back(static_cast<char>(c));
        }
        break;
      default:
        AppendUtf8(XmlChar(c) ? c : kReplacement, &out);
    }
  }
  return out;
}

absl::Status WriteAtomically(const std::string& path, const std::string& text) {
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  const int fd =
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot write '", path, "'"));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      ::close(fd);
      ::unlink(temp.c_str());
      return absl::ErrnoToStatus(error,
                                 absl::StrCat("cannot write '", path, "'"));
    }
    done += n;
  }
  if (::close(fd) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    return absl::ErrnoToStatus(error,
                               absl::StrCat("cannot write '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  while (!text.empty()) {
    const char32_t c = TakeChar(&text);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<int>(c));
        } else {
          AppendUtf8(c, &out);
        }
    }
  }
  return out + "\"";
}

std::string DescribeEnd(const parallel::StepReport& step) {
  // A timeout's message ends "(it was stopped by SIGSTOP)" when the command
  // was stopped: the summary says so too.
  auto stopped = [&step] {
    const size_t at = step.error->message.rfind(" (it was stopped by ");
    return at == std::string::npos ? std::string()
                                   : step.error->message.substr(at);
  };
  if (step.error.has_value() && step.error->type == parallel::kProcessTimeout) {
    return "timed out" + stopped();
  }
  if (step.error.has_value() &&
      step.error->type == parallel::kProcessSilentTimeout) {
    return "silent too long" + stopped();
  }
  if (step.error.has_value() && step.error->type == parallel::kOutputLost) {
    // "output could not be captured: No space left on device"
    const size_t at = step.error->message.find("output could not be");
    return at == std::string::npos ? "output lost"
                                   : step.error->message.substr(at);
  }
  if (step.error.has_value() &&
      step.error->type == parallel::kProcessStartError) {
    // As a shell: "exit code 127: x: command not found".
    return step.exit_code >= 0
               ? absl::StrCat("exit code ", step.exit_code, ": ",
                              step.error->message)
               : absl::StrCat("could not start: ", step.error->message);
  }
  if (step.signal != 0) {
    const char* abbrev = sigabbrev_np(step.signal);
    return absl::StrCat("signal ", step.signal,
                        abbrev ? absl::StrCat(" (SIG", abbrev, ")") : "");
  }
  if (step.exit_code >= 0) return absl::StrCat("exit code ", step.exit_code);
  return StatusWord(step);
}

std::string JsonReport(const parallel::RunReport& report) {
  std::string out = "[\n";
  for (size_t i = 0; i < report.steps.size(); ++i) {
    const parallel::StepReport& step = report.steps[i];
    absl::StrAppend(
        &out, "  {\"command\": ", JsonString(step.name),
        ", \"status\": ", JsonString(StatusWord(step)), ", \"exit_code\": ",
        step.exit_code >= 0 ? absl::StrCat(step.exit_code) : "null",
        ", \"signal\": ", step.signal != 0 ? absl::StrCat(step.signal) : "null",
        ", \"duration_ms\": ", absl::ToInt64Milliseconds(step.duration),
        ", \"output_bytes\": ", step.output_bytes);
    if (step.error.has_value()) {
      absl::StrAppend(&out,
                      ", \"error\": ", JsonString(step.error->ToString()));
    }
    absl::StrAppend(&out, "}", i + 1 < report.steps.size() ? "," : "", "\n");
  }
  return out + "]\n";
}

std::string JunitReport(const parallel::RunReport& report) {
  size_t skipped = 0;
  absl::Duration total;
  for (const parallel::StepReport& step : report.steps) {
    if (step.outcome != parallel::StepOutcome::kSucceeded &&
        step.outcome != parallel::StepOutcome::kFailed) {
      ++skipped;
    }
    total += step.duration;
  }
  std::string out = absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<testsuite name=\"parallel_steps\" tests=\"%d\" failures=\"%d\" "
      "errors=\"0\" skipped=\"%d\" time=\"%.3f\">\n",
      report.steps.size(), report.failed_count(), skipped,
      absl::ToDoubleSeconds(total));
  for (const parallel::StepReport& step : report.steps) {
    absl::StrAppendFormat(
        &out,
        "  <testcase classname=\"parallel_steps\" name=\"%s\" "
        "time=\"%.3f\">",
        XmlText(step.name, true), absl::ToDoubleSeconds(step.duration));
    if (step.outcome == parallel::StepOutcome::kFailed) {
      const std::string message =
          step.error.has_value() ? step.error->ToString() : DescribeEnd(step);
      absl::StrAppend(&out, "\n    <failure message=\"", XmlText(message, true),
                      "\">", XmlText(step.output_tail), "</failure>\n  ");
    } else if (step.outcome != parallel::StepOutcome::kSucceeded) {
      absl::StrAppend(&out, "<skipped message=\"", StatusWord(step), "\"/>");
    }
    out += "</testcase>\n";
  }
  return out + "</testsuite>\n";
}

absl::Status WriteJsonReport(const parallel::RunReport& report,
                             const std::string& path) {
  return WriteAtomically(path, JsonReport(report));
}

absl::Status WriteJunitReport(const parallel::RunReport& report,
                              const std::string& path) {
  return WriteAtomically(path, JunitReport(report));
}

}  // namespace tools
