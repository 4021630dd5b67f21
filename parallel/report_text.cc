#include "parallel/report_text.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace parallel {
namespace {

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
}  // namespace

std::string XmlText(absl::string_view text, bool attribute) {
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

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view text) {
  const std::string temp = absl::StrCat(path, ".tmp.", ::getpid());
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


absl::string_view Utf8Prefix(absl::string_view text, size_t size) {
  if (text.size() <= size) return text;
  while (size > 0 && (static_cast<unsigned char>(text[size]) & 0xC0) == 0x80) {
    --size;
  }
  return text.substr(0, size);
}

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

}  // namespace parallel
