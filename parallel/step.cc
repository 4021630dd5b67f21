#include "parallel/step.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_split.h"

namespace parallel {
namespace {

// Characters that make a command line need a shell (GNU make's list, plus
// the newline).
constexpr absl::string_view kShellMetacharacters =
    "#;\"*?[]&|<>(){}$`'\\~=%!^\n";

// Words that only the shell understands as a command: POSIX special and
// regular builtins and reserved words, as GNU make's list for /bin/sh. A
// command line starting with one runs under /bin/sh even without
// metacharacters ("exit 3", "cd /tmp", ": 1").
constexpr absl::string_view kShellWords[] = {
    ".",       ":",        "alias",    "bg",     "break", "case",    "cd",
    "command", "continue", "do",       "done",   "elif",  "else",    "esac",
    "eval",    "exec",     "exit",     "export", "fc",    "fg",      "fi",
    "for",     "getopts",  "hash",     "if",     "jobs",  "kill",    "login",
    "logout",  "read",     "readonly", "return", "set",   "shift",   "source",
    "test",    "then",     "times",    "trap",   "type",  "typeset", "ulimit",
    "umask",   "unalias",  "unset",    "until",  "wait",  "while",   "[",
};

bool NeedsShell(absl::string_view command_line) {
  if (command_line.find_first_of(kShellMetacharacters) !=
      absl::string_view::npos) {
    return true;
  }
  const absl::string_view first = command_line.substr(
      0, std::min(command_line.find_first_of(" \t"), command_line.size()));
  for (absl::string_view word : kShellWords) {
    if (first == word) return true;
  }
  return false;
}

}  // namespace

Step Step::Function(std::function<absl::StatusOr<std::string>()> body,
                    std::string name) {
  Step step;
  step.body_ = std::move(body);
  step.name_ = std::move(name);
  return step;
}

Step Step::Command(std::vector<std::string> argv, std::string name) {
  Step step;
  step.argv_ = std::move(argv);
  step.name_ = std::move(name);
  return step;
}

Step Step::Shell(const std::string& command_line, std::string name) {
  std::vector<std::string> argv;
  if (NeedsShell(command_line)) {
    argv = {"/bin/sh", "-c", command_line};
  } else {
    argv =
        absl::StrSplit(command_line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (argv.empty()) argv = {"/bin/sh", "-c", command_line};
  }
  return Command(std::move(argv),
                 name.empty() ? command_line : std::move(name));
}

size_t RunReport::failed_count() const {
  size_t count = 0;
  for (const StepReport& step : steps) {
    if (step.outcome == StepOutcome::kFailed) ++count;
  }
  return count;
}

std::vector<ExceptionInfo> RunReport::failures() const {
  std::vector<ExceptionInfo> infos;
  for (const StepReport& step : steps) {
    if (step.outcome == StepOutcome::kFailed && step.error.has_value()) {
      infos.push_back(*step.error);
    }
  }
  return infos;
}

}  // namespace parallel
