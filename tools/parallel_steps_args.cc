#include "tools/parallel_steps_args.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "tools/gnu_args.h"

namespace tools {
namespace {

constexpr char kUsage[] =
    R"(usage: parallel_steps [flags] [--] [command ...]
       parallel_steps [flags] [--] template ::: arg ... [::: arg ...] [:::: file ...]
       ... | parallel_steps [flags] [--] template-with-{}

Runs each command (a shell command line) as a step in its own process group,
several at once, and prints each command's output grouped and in order, as if
they had run one after another. Without commands after the flags, reads one
command per line from stdin (blank lines and lines starting with # skipped).

As GNU parallel: the words before ::: (or ::::) form a command template, run
once per argument after :::, per line of each file after ::::, or per stdin
line when the template has a replacement string and no ::: is given. In the
template {} is the argument, {.} without extension, {/} its base name, {//}
its directory, {/.} the base name without extension, {#} the job number,
{N} (and {N.}, {N/}, ...) the N-th source's argument; arguments are
shell-quoted; a template without any gets them appended. Several sources
give their cross product; --link takes them side by side.

flags:
  -j N, -jN, --jobs=N   run at most N commands at once (default: number of
                        CPUs; under make -jN, make's jobserver decides)
  --halt-on-error       on the first failure, kill the rest and start no more
                        (--halt=now,fail=1)
  --halt=WHEN,WHAT=N    GNU parallel's: WHEN is now (kill the running
                        commands) or soon (let them finish); WHAT=N is
                        fail=N, fail=N%, success=N or success=N% (of all
                        commands); start no more once it holds. Exit
                        status as GNU's: 0 after success=N, the failing
                        command's after fail=1
  --timeout=D           kill a command that runs longer than D (e.g. 300ms, 2m)
  --silent-timeout=D    kill a command that prints nothing for D
  --json=FILE           write a JSON report, one object per command
  --junit=FILE          write a JUnit XML report, one testcase per command
  --trace=FILE          write a Chrome trace-event JSON of the run (Perfetto,
                        chrome://tracing): a lane per slot, an event per
                        command, running/queued counters
  --timeline=FILE       write the run as one self-contained HTML timeline
  --tag                 prefix each output line with its command (with a
                        template: its arguments, as GNU parallel) and a tab
  --line-buffer         print every running command's whole lines as they
                        come (lines of commands interleave, never mix)
                        instead of each command's output whole and in order
  --results=DIR         also keep each command's output in DIR/SEQ/stdout
                        and DIR/SEQ/stderr, and its command line in
                        DIR/SEQ/cmd (SEQ: the job number, {#})
  --link                with several ::: / :::: sources, take their
                        arguments side by side instead of every combination
  --dry-run             print the commands that would run, run nothing
  --retries=N           run a failed command again, up to N more times; one
                        that then passes is flaky (summary, --json, --junit).
                        Only the last attempt's output is printed (GNU's);
                        output then goes out per command once it ended
  --joblog=FILE         GNU parallel's job log: a tab-separated line per
                        command run (Seq, Host, Starttime, JobRuntime, Send,
                        Receive, Exitval, Signal, Command)
  --resume              with --joblog: skip the commands the log has
  --resume-failed       with --joblog: skip the commands the log has as
                        passed (run the failed ones again)
  --slurm               run each command as a Slurm job step (srun
                        --exclusive -N1 -n1): inside an allocation
                        (SLURM_JOB_ID set) in it, else in one it asks for,
                        sized to -j, and gives back at the end
  --slurm-args=ARGS     more srun arguments for every command (split on
                        blanks), e.g. --slurm-args='--mem=2G --cpus-per-task=4'
  --slurm-alloc-args=ARGS
                        more salloc arguments for the allocation --slurm
                        asks for outside one, e.g.
                        --slurm-alloc-args='--partition=debug --time=30'
  --tty                 one command at a time, with the terminal (/dev/tty)
                        as its stdin and in the foreground, so that it may
                        prompt and read (GNU parallel's --tty); implies -j 1
  --progress            a [done/total] status line on stderr (default: on
                        when stderr is a terminal); --no-progress: never
  --temp-dir=DIR        where output is captured (default: $TMPDIR or /tmp)
  --help                show this help
  --version             show the version

exit status: 0 if all passed, else the number of failed commands (max 101),
plus one if the output could not be written (--halt: see above); killed by the signal if
interrupted; killed by SIGPIPE (141) when the reader of stdout goes away;
255 on bad usage.
)";

absl::Duration ParseDurationFlag(const std::string& name,
                                 const std::string& value) {
  absl::Duration duration;
  if (!absl::ParseDuration(value, &duration) ||
      duration <= absl::ZeroDuration()) {
    UsageError(absl::StrCat("--", name, " wants a positive duration such as ",
                            "300ms or 2m, got '", value, "'"));
  }
  return duration;
}

// --halt=now|soon,fail=N|fail=N%|success=N|success=N%, or never.
void ParseHalt(const std::string& text, Flags* flags) {
  if (text == "never") return;
  auto bad = [&] {
    UsageError(absl::StrCat("--halt wants now|soon,fail=N|success=N (N may "
                            "be a percentage), got '", text, "'"));
  };
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  if (parts.size() != 2) bad();
  if (parts[0] == "now") {
    flags->halt_when = parallel::RunHooks::Halt::kNow;
  } else if (parts[0] == "soon") {
    flags->halt_when = parallel::RunHooks::Halt::kSoon;
  } else {
    bad();
  }
  absl::string_view what = parts[1];
  if (absl::ConsumePrefix(&what, "success=")) {
    flags->halt_on_success = true;
  } else if (!absl::ConsumePrefix(&what, "fail=")) {
    bad();
  }
  flags->halt_percent = absl::ConsumeSuffix(&what, "%");
  if (!absl::SimpleAtod(what, &flags->halt_count) || flags->halt_count <= 0 ||
      (flags->halt_percent && flags->halt_count > 100)) {
    bad();
  }
}

}  // namespace

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  flags.jobs = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      flags.commands_given = true;
      for (++i; i < argc; ++i) flags.commands.push_back(argv[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      flags.commands_given = true;
      for (; i < argc; ++i) flags.commands.push_back(argv[i]);
      break;
    }
    std::string name =
        std::string(absl::StripPrefix(absl::StripPrefix(arg, "-"), "-"));
    std::string value;
    bool has_value = false;
    if (arg.size() > 2 && arg[0] == '-' && arg[1] == 'j') {
      // make's spelling: -j4
      name = "j";
      value = arg.substr(2);
      has_value = true;
    } else if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto take_value = [&]() -> std::string {
      if (has_value) {
        if (value.empty()) {
          UsageError(absl::StrCat("--", name, "= needs a value after '='"));
        }
        return value;
      }
      if (i + 1 >= argc) UsageError(absl::StrCat("--", name, " needs a value"));
      // `--json --` or `--json --tag`: a flag, not a value (a value that
      // starts with '-' is written --json=-x).
      if (argv[i + 1][0] == '-' && argv[i + 1][1] != '\0') {
        UsageError(absl::StrCat("--", name, " needs a value, got the flag '",
                                argv[i + 1], "' (write --", name,
                                "=VALUE for a value that starts with '-')"));
      }
      return argv[++i];
    };
    auto no_value = [&] {
      if (has_value) UsageError(absl::StrCat("--", name, " takes no value"));
    };
    // Flags that switch something on and take no value.
    static constexpr std::pair<const char*, bool Flags::*> kSwitches[] = {
        {"tag", &Flags::tag},
        {"line-buffer", &Flags::line_buffer},
        {"slurm", &Flags::slurm},
        {"tty", &Flags::tty},
        {"link", &Flags::link},
        {"dry-run", &Flags::dry_run},
        {"resume", &Flags::resume},
        {"resume-failed", &Flags::resume_failed},
        {"halt-on-error", &Flags::halt_on_error},
    };
    const auto* on = std::find_if(
        std::begin(kSwitches), std::end(kSwitches),
        [&](const auto& entry) { return name == entry.first; });
    if (on != std::end(kSwitches)) {
      no_value();
      flags.*(on->second) = true;
    } else if (name == "help" || name == "h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (name == "version") {
      std::cout << "parallel_steps 0.1\n";
      std::exit(0);
    } else if (name == "j" || name == "jobs") {
      const std::string text = take_value();
      if (!absl::SimpleAtoi(text, &flags.jobs) || flags.jobs < 1) {
        UsageError(
            absl::StrCat("--jobs wants a positive number, got '", text, "'"));
      }
      flags.jobs_given = true;
    } else if (name == "results") {
      flags.results = take_value();
    } else if (name == "slurm-args") {
      flags.slurm_args = absl::StrSplit(take_value(), ' ', absl::SkipWhitespace());
      flags.slurm_args_given = true;
    } else if (name == "slurm-alloc-args") {
      flags.slurm_alloc_args =
          absl::StrSplit(take_value(), ' ', absl::SkipWhitespace());
      flags.slurm_args_given = true;
    } else if (name == "joblog") {
      flags.joblog = take_value();
    } else if (name == "retries") {
      const std::string text = take_value();
      if (!absl::SimpleAtoi(text, &flags.retries) || flags.retries < 0) {
        UsageError(absl::StrCat("--retries wants a number >= 0, got '", text,
                                "'"));
      }
    } else if (name == "progress" || name == "no-progress") {
      no_value();
      flags.progress = name == "progress" ? 1 : 0;
    } else if (name == "halt") {
      ParseHalt(take_value(), &flags);
    } else if (name == "timeout") {
      flags.timeout = ParseDurationFlag(name, take_value());
    } else if (name == "silent-timeout") {
      flags.silent_timeout = ParseDurationFlag(name, take_value());
    } else if (name == "json") {
      flags.json = take_value();
    } else if (name == "junit") {
      flags.junit = take_value();
    } else if (name == "trace") {
      flags.trace = take_value();
    } else if (name == "timeline") {
      flags.timeline = take_value();
    } else if (name == "temp-dir") {
      flags.temp_dir = take_value();
    } else {
      UsageError(absl::StrCat("unknown flag '", arg, "'"));
    }
  }
  return flags;
}

namespace {

// Every line of `in`, as GNU parallel takes arguments (a line may be
// empty; a trailing \r is dropped).
std::vector<std::string> ReadLines(std::istream& in, const std::string& what) {
  std::vector<std::string> lines;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find('\0') != std::string::npos) {
      UsageError(absl::StrCat("line ", number, " of ", what, " has a NUL byte"));
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  if (in.bad()) UsageError(absl::StrCat("cannot read ", what));
  return lines;
}

// GNU parallel's forms (gnu_args.h): `template ::: args`, `:::: files`, or
// a template with a replacement string fed by stdin lines. Returns false
// if the words are plain commands.
bool ExpandTemplate(const Flags& flags, std::vector<std::string>* commands,
                    std::vector<std::string>* arguments) {
  const std::vector<std::string>& words = flags.commands;
  const auto first = std::find_if(words.begin(), words.end(), [](const auto& w) {
    return w == ":::" || w == "::::";
  });
  const bool any_replacement = std::any_of(
      words.begin(), words.end(), [](const std::string& word) {
        return HasReplacementString(word);
      });
  if (first == words.end() && !any_replacement) return false;
  const std::string command =
      absl::StrJoin(words.begin(), first, " ");
  if (command.empty()) UsageError(absl::StrCat(*first, " needs a command before it"));
  std::vector<std::vector<std::string>> sources;
  if (first == words.end()) {
    struct stat st;
    if (::fstat(STDIN_FILENO, &st) != 0) UsageError("stdin is closed");
    if (S_ISDIR(st.st_mode)) UsageError("stdin is a directory, not a list of arguments");
    sources.push_back(ReadLines(std::cin, "stdin"));
  }
  bool files = false;
  for (auto it = first; it != words.end(); ++it) {
    if (*it == ":::" || *it == "::::") {
      files = *it == "::::";
      if (it + 1 == words.end() || *(it + 1) == ":::" || *(it + 1) == "::::") {
        UsageError(absl::StrCat(*it, " with nothing after it"));
      }
      if (!files) sources.emplace_back();
      continue;
    }
    if (!files) {
      sources.back().push_back(*it);
      continue;
    }
    std::ifstream file(*it);
    if (!file) {
      UsageError(absl::StrCat(":::: ", *it, ": cannot read it: ",
                              std::strerror(errno)));
    }
    sources.push_back(ReadLines(file, absl::StrCat("'", *it, "'")));
  }
  absl::StatusOr<std::vector<std::string>> expanded =
      tools::ExpandTemplate(command, sources, flags.link, arguments);
  if (!expanded.ok()) UsageError(std::string(expanded.status().message()));
  *commands = *std::move(expanded);
  return true;
}


std::vector<std::string> ReadCommands(std::istream& in) {
  std::vector<std::string> commands;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    // A NUL would cut the command that runs short of the one reported.
    if (line.find('\0') != std::string::npos) {
      UsageError(absl::StrCat("line ", number, " of stdin has a NUL byte"));
    }
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    commands.emplace_back(text);
  }
  if (in.bad()) UsageError("cannot read commands from stdin");
  return commands;
}

}  // namespace

[[noreturn]] void UsageError(const std::string& message) {
  std::cerr << "parallel_steps: " << message
            << " (see parallel_steps --help)\n";
  std::exit(kUsageError);
}

void FillCommands(Flags* flags) {
  if (std::vector<std::string> expanded, arguments;
      ExpandTemplate(*flags, &expanded, &arguments)) {
    flags->commands = std::move(expanded);
    flags->tags = std::move(arguments);
  } else if (flags->link) {
    UsageError("--link needs ::: or :::: input sources");
  } else if (!flags->commands_given) {
    if (::fcntl(STDIN_FILENO, F_GETFD) == -1) UsageError("stdin is closed");
    struct stat st;
    if (::fstat(STDIN_FILENO, &st) == 0 && S_ISDIR(st.st_mode)) {
      UsageError("stdin is a directory, not a list of commands");
    }
    flags->commands = ReadCommands(std::cin);
  }
}

}  // namespace tools
