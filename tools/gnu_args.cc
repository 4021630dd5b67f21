#include "tools/gnu_args.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace tools {
namespace {

// A replacement string at the start of `text` ("{" already there): its
// length, the source it names (0: all of them, -1: the job number) and its
// form ("", ".", "/", "//", "/."); 0 if it is not one.
struct Replacement {
  size_t length = 0;
  int source = 0;
  std::string form;
};
Replacement ParseReplacement(absl::string_view text) {
  const size_t close = text.find('}');
  if (text.empty() || text[0] != '{' || close == absl::string_view::npos) {
    return {};
  }
  absl::string_view inner = text.substr(1, close - 1);
  Replacement r;
  r.length = close + 1;
  if (inner == "#" || inner == "%") {
    r.source = inner == "#" ? -1 : -2;
    return r;
  }
  size_t digits = 0;
  while (digits < inner.size() &&
         std::isdigit(static_cast<unsigned char>(inner[digits]))) {
    ++digits;
  }
  if (digits > 0 && !absl::SimpleAtoi(inner.substr(0, digits), &r.source)) {
    return {};
  }
  if (digits > 0 && r.source == 0) return {};
  r.form = std::string(inner.substr(digits));
  if (r.form != "" && r.form != "." && r.form != "/" && r.form != "//" &&
      r.form != "/.") {
    return {};
  }
  return r;
}

std::string Apply(const std::string& arg, const std::string& form) {
  const size_t slash = arg.rfind('/');
  const std::string base =
      slash == std::string::npos ? arg : arg.substr(slash + 1);
  auto drop_extension = [](const std::string& path) {
    const size_t dot = path.rfind('.');
    const size_t slash = path.rfind('/');
    if (dot == std::string::npos || dot == 0 ||
        (slash != std::string::npos && dot < slash)) {
      return path;
    }
    return path.substr(0, dot);
  };
  if (form == ".") return drop_extension(arg);
  if (form == "/") return base;
  if (form == "//") return slash == std::string::npos ? "." : arg.substr(0, slash);
  if (form == "/.") return drop_extension(base);
  return arg;
}

}  // namespace

std::string ShellQuote(absl::string_view text) {
  const bool plain =
      !text.empty() &&
      std::all_of(text.begin(), text.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               absl::string_view("_-./=+,:@%^").find(c) !=
                   absl::string_view::npos;
      });
  if (plain) return std::string(text);
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "'\\''"}}), "'");
}

bool HasReplacementString(absl::string_view word) {
  for (size_t i = word.find('{'); i != absl::string_view::npos;
       i = word.find('{', i + 1)) {
    if (ParseReplacement(word.substr(i)).length > 0) return true;
  }
  return false;
}

std::string FillTemplate(absl::string_view command,
                         const std::vector<std::string>& args, size_t job) {
  if (!HasReplacementString(command)) {
    std::vector<std::string> quoted;
    for (const std::string& arg : args) quoted.push_back(ShellQuote(arg));
    return absl::StrCat(command, " ", absl::StrJoin(quoted, " "));
  }
  std::string out;
  for (size_t i = 0; i < command.size();) {
    const Replacement r = command[i] == '{'
                              ? ParseReplacement(command.substr(i))
                              : Replacement();
    if (r.length == 0) {
      out.push_back(command[i++]);
      continue;
    }
    i += r.length;
    if (r.source == -1) {
      absl::StrAppend(&out, job);
    } else if (r.source == -2) {
      // The slot is known only when the job starts: the library gives each
      // command it in the environment.
      absl::StrAppend(&out, "$PARALLEL_JOBSLOT");
    } else if (r.source == 0) {
      std::vector<std::string> each;
      for (const std::string& arg : args) {
        each.push_back(ShellQuote(Apply(arg, r.form)));
      }
      absl::StrAppend(&out, absl::StrJoin(each, " "));
    } else if (static_cast<size_t>(r.source) <= args.size()) {
      absl::StrAppend(&out, ShellQuote(Apply(args[r.source - 1], r.form)));
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ExpandTemplate(
    absl::string_view command,
    const std::vector<std::vector<std::string>>& sources, bool link,
    std::vector<std::string>* arguments) {
  for (size_t i = command.find('{'); i != absl::string_view::npos;
       i = command.find('{', i + 1)) {
    const Replacement r = ParseReplacement(command.substr(i));
    if (r.length > 0 && r.source > static_cast<int>(sources.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", command.substr(i, r.length), "' names input source ",
                       r.source, " but there are ", sources.size()));
    }
  }
  std::vector<std::string> commands;
  if (sources.empty()) return commands;
  size_t jobs = link ? 0 : 1;
  for (const auto& source : sources) {
    if (source.empty()) return commands;
    jobs = link ? std::max(jobs, source.size()) : jobs * source.size();
  }
  commands.reserve(jobs);
  std::vector<std::string> args(sources.size());
  for (size_t job = 0; job < jobs; ++job) {
    size_t rest = job;
    for (size_t s = sources.size(); s-- > 0;) {  // the last varies fastest
      const auto& source = sources[s];
      args[s] = link ? source[job % source.size()] : source[rest % source.size()];
      if (!link) rest /= source.size();
    }
    commands.push_back(FillTemplate(command, args, job + 1));
    if (arguments != nullptr) arguments->push_back(absl::StrJoin(args, " "));
  }
  return commands;
}

}  // namespace tools
