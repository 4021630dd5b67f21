// parallel_steps: run shell commands as parallel steps, with grouped, in-order
// output (the earliest unfinished command streamed live), a failure summary,
// and JSON / JUnit reports for CI.
//
//   parallel_steps [flags] -- 'make -C a' 'make -C b' './run_tests.sh'
//   generate_commands | parallel_steps -j 4 --junit=report.xml
//
// Exit code: 0 if every command passed; otherwise the number of failed
// commands, at most 101 (GNU parallel's convention); the tool dies of SIGINT /
// SIGTERM / SIGHUP / SIGQUIT when interrupted (a shell sees 130 / 143 / 129 /
// 131) after
// killing the commands and replaying their output so far; 255 on bad usage,
// with a one-line error.
//
// Flags are parsed here rather than with Abseil flags because absl's parser
// exits with status 1 on a bad flag, and this tool's contract is 255.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "parallel/parallel.h"
#include "tools/gnu_args.h"
#include "tools/jobserver.h"
#include "tools/joblog.h"
#include "tools/reports.h"

namespace {

constexpr int kUsageError = 255;
constexpr int kMaxFailureExit = 101;
// Failures the summary shows in full.
constexpr size_t kMaxSummarized = 20;
// As a shell reports death by SIGPIPE.
constexpr int kBrokenPipeExit = 128 + SIGPIPE;

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

// The terminal of --tty, closed at the end.
struct UniqueTerminal {
  int fd = -1;
  ~UniqueTerminal() {
    if (fd >= 0) ::close(fd);
  }
};

struct Flags {
  int jobs = 0;
  bool jobs_given = false;
  bool tag = false;
  bool line_buffer = false;
  std::string results;
  bool slurm = false;
  std::vector<std::string> slurm_args;
  std::vector<std::string> slurm_alloc_args;
  bool slurm_args_given = false;
  bool link = false;
  bool dry_run = false;
  int retries = 0;
  std::string joblog;
  bool resume = false;
  bool resume_failed = false;
  bool tty = false;
  int progress = -1;  // -1: when stderr is a terminal
  bool halt_on_error = false;
  // --halt: 0 = never.
  parallel::RunHooks::Halt halt_when = parallel::RunHooks::Halt::kNo;
  bool halt_on_success = false;
  double halt_count = 0;   // commands, or a percentage when halt_percent
  bool halt_percent = false;
  absl::Duration timeout = absl::InfiniteDuration();
  absl::Duration silent_timeout = absl::InfiniteDuration();
  std::string json;
  std::string junit;
  std::string trace;
  std::string timeline;
  std::string temp_dir;
  std::vector<std::string> commands;
  // From a template: each command's arguments, which --tag puts before its
  // lines (GNU parallel's); empty when whole commands were given.
  std::vector<std::string> tags;
  bool commands_given = false;
};

[[noreturn]] void UsageError(const std::string& message) {
  std::cerr << "parallel_steps: " << message
            << " (see parallel_steps --help)\n";
  std::exit(kUsageError);
}

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
    if (name == "help" || name == "h") {
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
    } else if (name == "tag") {
      no_value();
      flags.tag = true;
    } else if (name == "line-buffer") {
      no_value();
      flags.line_buffer = true;
    } else if (name == "results") {
      flags.results = take_value();
    } else if (name == "slurm") {
      no_value();
      flags.slurm = true;
    } else if (name == "slurm-args") {
      flags.slurm_args = absl::StrSplit(take_value(), ' ', absl::SkipWhitespace());
      flags.slurm_args_given = true;
    } else if (name == "slurm-alloc-args") {
      flags.slurm_alloc_args =
          absl::StrSplit(take_value(), ' ', absl::SkipWhitespace());
      flags.slurm_args_given = true;
    } else if (name == "tty") {
      no_value();
      flags.tty = true;
    } else if (name == "link") {
      no_value();
      flags.link = true;
    } else if (name == "dry-run") {
      no_value();
      flags.dry_run = true;
    } else if (name == "joblog") {
      flags.joblog = take_value();
    } else if (name == "retries") {
      const std::string text = take_value();
      if (!absl::SimpleAtoi(text, &flags.retries) || flags.retries < 0) {
        UsageError(absl::StrCat("--retries wants a number >= 0, got '", text,
                                "'"));
      }
    } else if (name == "resume" || name == "resume-failed") {
      no_value();
      (name == "resume" ? flags.resume : flags.resume_failed) = true;
    } else if (name == "progress" || name == "no-progress") {
      no_value();
      flags.progress = name == "progress" ? 1 : 0;
    } else if (name == "halt-on-error") {
      no_value();
      flags.halt_on_error = true;
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
        return tools::HasReplacementString(word);
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

// The ninja-style status line: "[done/total] N running: <command>", redrawn
// in place on stderr, erased before any output and at the end. On a
// terminal that cannot erase (TERM=dumb or unset) it is only returned to
// and overwritten with spaces: no escape codes.
class StatusLine {
 public:
  explicit StatusLine(const std::vector<std::string>& commands)
      : commands_(commands),
        running_(commands.size(), false),
        stopped_(commands.size(), false) {
    const char* term = std::getenv("TERM");
    dumb_ = term == nullptr || *term == '\0' || std::string(term) == "dumb";
  }

  void Started(size_t index) {
    running_[index] = true;
    ++active_;
    Draw();
  }
  void Ended(size_t index) {
    if (running_[index]) {
      running_[index] = false;
      --active_;
    }
    Stopped(index, false);
    ++done_;
    Draw();
  }
  // A running command was stopped (kill -STOP, Ctrl-Z's SIGTSTP) or
  // continued: the line names a stopped one, which will not end by itself.
  void Stopped(size_t index, bool stopped) {
    if (stopped_[index] == stopped) return;
    stopped_[index] = stopped;
    stopped ? ++stopped_count_ : --stopped_count_;
    Draw();
  }
  // Whether the line was ever drawn (progress was on).
  bool ever_shown() const { return ever_shown_; }
  void Erase() {
    if (!shown_) return;
    Write(dumb_ ? absl::StrCat("\r", std::string(width_, ' '), "\r")
                : "\r\x1b[K");
    shown_ = false;
    width_ = 0;
  }

 private:
  void Draw() {
    // The shortest running command; a stopped one first.
    const std::string* shortest = nullptr;
    for (size_t i = 0; i < commands_.size(); ++i) {
      if (running_[i] && (stopped_count_ == 0 || stopped_[i]) &&
          (shortest == nullptr || commands_[i].size() < shortest->size())) {
        shortest = &commands_[i];
      }
    }
    std::string line =
        absl::StrCat("[", done_, "/", commands_.size(), "] ", active_,
                     " running");
    if (stopped_count_ > 0) {
      absl::StrAppend(&line, ", ", stopped_count_, " stopped");
    }
    if (shortest != nullptr) {
      std::string command = *shortest;
      std::replace(command.begin(), command.end(), '\n', ' ');
      if (command.size() > 60) {
        command = absl::StrCat(parallel::Utf8Prefix(command, 57), "...");
      }
      absl::StrAppend(&line, ": ", command);
    }
    if (dumb_) {
      // Spaces cover what is left of a longer line before.
      const size_t width = line.size();
      if (width < width_) line.append(width_ - width, ' ');
      Write(absl::StrCat("\r", line));
      width_ = width;
    } else {
      Write(absl::StrCat("\r\x1b[K", line));
    }
    shown_ = true;
    ever_shown_ = true;
  }
  static void Write(const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n =
          ::write(STDERR_FILENO, text.data() + done, text.size() - done);
      if (n <= 0) return;
      done += n;
    }
  }

  const std::vector<std::string>& commands_;
  std::vector<bool> running_;
  std::vector<bool> stopped_;
  size_t active_ = 0;
  size_t stopped_count_ = 0;
  size_t done_ = 0;
  bool shown_ = false;
  bool ever_shown_ = false;
  bool dumb_ = false;
  size_t width_ = 0;  // bytes of the line shown, when dumb_
};

// A command as the summary shows it: on one line, and cut (on a UTF-8
// character boundary) when long — the reports keep it whole.
std::string SummaryName(const std::string& name) {
  constexpr size_t kMaxShown = 200;
  std::string shown = name;
  std::replace(shown.begin(), shown.end(), '\n', ' ');
  if (shown.size() <= kMaxShown) return shown;
  return absl::StrCat(parallel::Utf8Prefix(shown, kMaxShown - 3), "... (", name.size(),
                      " bytes)");
}

// "0ms" rather than absl's bare "0" for a command that took no time.
std::string SummaryDuration(absl::Duration duration) {
  duration = absl::Trunc(duration, absl::Milliseconds(1));
  return duration == absl::ZeroDuration() ? "0ms"
                                          : absl::FormatDuration(duration);
}

void PrintSummary(const parallel::RunReport& report) {
  const size_t failed = report.failed_count();
  if (failed == 0) return;
  std::string text = absl::StrCat("\nparallel_steps: ", failed, " of ",
                                  report.steps.size(), " commands failed:\n");
  size_t shown = 0;
  for (const parallel::StepReport& step : report.steps) {
    if (step.outcome != parallel::StepOutcome::kFailed) continue;
    if (++shown > kMaxSummarized) {
      absl::StrAppend(&text, "  ... and ", failed - kMaxSummarized,
                      " more (all of them are in --json / --junit)\n");
      break;
    }
    absl::StrAppend(&text, "  FAILED ", SummaryName(step.name), "  (",
                    tools::DescribeEnd(step), ", ",
                    SummaryDuration(step.duration), ")\n");
    std::vector<absl::string_view> lines =
        absl::StrSplit(absl::StripSuffix(step.output_tail, "\n"), '\n');
    const size_t first = lines.size() > 5 ? lines.size() - 5 : 0;
    for (size_t i = first; i < lines.size(); ++i) {
      if (!lines[i].empty()) absl::StrAppend(&text, "    | ", lines[i], "\n");
    }
  }
  std::cerr << text;
}

// A report file must be writable before anything runs: its directory exists
// and takes files.
void CheckReportPath(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (::access(dir.c_str(), W_OK) != 0) {
    UsageError(absl::StrCat("--", flag, "=", path, ": cannot write in '", dir,
                            "': ", std::strerror(errno)));
  }
}

// Under make -jN without an explicit -j, make's jobserver decides.
std::unique_ptr<tools::JobserverClient> MakeJobserver(const Flags& flags) {
  const char* makeflags = std::getenv("MAKEFLAGS");
  if (makeflags == nullptr || flags.jobs_given) return nullptr;
  absl::StatusOr<std::unique_ptr<tools::JobserverClient>> client =
      tools::JobserverClient::FromMakeflags(makeflags);
  if (!client.ok()) {
    std::cerr << "parallel_steps: " << client.status().message()
              << "; running with -j " << flags.jobs << "\n";
    return nullptr;
  }
  return *std::move(client);
}

// Writes --json and --junit; false (with a message) if one failed.
// Every command's last attempt (`report`), with how many it took, and every
// attempt of all (`every`, with each one's job number): the reports, the
// trace, the timeline and the job log. False if one could not be written.
bool WriteReports(const Flags& flags, const parallel::RunReport& report,
                  const std::vector<tools::Attempts>& attempts,
                  const parallel::RunReport& every,
                  const std::vector<size_t>& every_seq,
                  const std::string& joblog_before) {
  std::vector<std::pair<std::string, absl::Status>> written;
  auto write = [&](const std::string& path, auto make) {
    if (!path.empty()) written.emplace_back(path, make());
  };
  write(flags.json,
        [&] { return tools::WriteJsonReport(report, flags.json, &attempts); });
  write(flags.junit,
        [&] { return tools::WriteJunitReport(report, flags.junit, &attempts); });
  write(flags.timeline,
        [&] { return tools::WriteTimelineReport(every, flags.timeline); });
  write(flags.trace, [&] {
    return parallel::WriteFileAtomically(flags.trace,
                                         parallel::ChromeTraceJson(every));
  });
  write(flags.joblog, [&] {
    return parallel::WriteFileAtomically(
        flags.joblog,
        (joblog_before.empty() ? tools::kJoblogHeader : joblog_before) +
            tools::JoblogLines(every, every_seq));
  });
  bool ok = true;
  for (const auto& [path, status] : written) {
    if (status.ok()) continue;
    std::cerr << "parallel_steps: " << status.message() << "\n";
    ok = false;
  }
  return ok;
}

// The commands that failed and then passed on a retry.
void PrintFlaky(const parallel::RunReport& report,
                const std::vector<tools::Attempts>& attempts) {
  std::string text;
  size_t flaky = 0;
  for (size_t i = 0; i < report.steps.size(); ++i) {
    if (!attempts[i].flaky()) continue;
    ++flaky;
    absl::StrAppend(&text, "  FLAKY ", SummaryName(report.steps[i].name),
                    "  (passed on attempt ", attempts[i].count, "; first: ",
                    attempts[i].first_failure->message, ")\n");
  }
  if (flaky == 0) return;
  std::cerr << "parallel_steps: " << flaky << " of " << report.steps.size()
            << " commands were flaky (failed, then passed on a retry):\n"
            << text;
}

// --results=DIR: DIR exists (made if missing, with its parents) and takes
// files before anything runs.
void MakeResultsDir(const std::string& dir) {
  if (dir.empty()) return;
  std::string path;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    absl::StrAppend(&path, part, "/");
    if (part.empty() || part == ".") continue;
    if (::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST) {
      UsageError(absl::StrCat("--results=", dir, ": cannot create '", path,
                              "': ", std::strerror(errno)));
    }
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    UsageError(absl::StrCat("--results=", dir, ": cannot write in it: ",
                            std::strerror(errno)));
  }
}

// --results: DIR/SEQ, made with its cmd file as the command starts ("" if
// that fails: the step then fails as its output files cannot be created
// there either, with a message naming them).
std::string ResultsDirFor(const std::string& dir, size_t seq,
                          const std::string& command) {
  const std::string path = absl::StrCat(dir, "/", seq);
  if (::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST) return path;
  std::ofstream cmd(path + "/cmd", std::ios::trunc);
  cmd << command << "\n";
  return path;
}

// Whether --halt fired, and on which command's end.
struct HaltState {
  bool fired = false;
  parallel::StepReport trigger;
};

// The status line's observers (when shown), the jobserver, --tag,
// --line-buffer and --results (`seqs` and `commands`: this run's steps' job
// numbers and command lines).
parallel::RunHooks MakeHooks(const Flags& flags, parallel::Throttle* jobserver,
                             StatusLine* status,
                             std::vector<size_t> seqs,
                             std::vector<std::string> commands,
                             std::vector<std::string> tags, HaltState* halt,
                             bool retried_if_failed) {
  parallel::RunHooks hooks;
  hooks.throttle = jobserver;
  hooks.tag_lines = flags.tag;
  hooks.line_tags = std::move(tags);
  hooks.line_buffer = flags.line_buffer;
  if (!flags.results.empty()) {
    hooks.results_dir = [&flags, seqs = std::move(seqs),
                         commands = std::move(commands)](size_t index) {
      return ResultsDirFor(flags.results, seqs[index], commands[index]);
    };
  }
  if (flags.halt_when != parallel::RunHooks::Halt::kNo) {
    // --halt: once enough commands failed (or passed), of all of them.
    const double needed =
        flags.halt_percent
            ? std::ceil(flags.halt_count * flags.commands.size() / 100.0)
            : flags.halt_count;
    hooks.should_halt = [&flags, needed, halt,
                         seen = std::make_shared<size_t>(0)](
                            size_t, const parallel::StepReport& step) {
      const bool counts =
          flags.halt_on_success
              ? step.outcome == parallel::StepOutcome::kSucceeded
              : step.outcome == parallel::StepOutcome::kFailed;
      if (counts && ++*seen >= needed) {
        if (!halt->fired) *halt = HaltState{true, step};
        return flags.halt_when;
      }
      return parallel::RunHooks::Halt::kNo;
    };
  }
  if (retried_if_failed) {
    // --retries: GNU parallel shows only a command's last attempt.
    hooks.replay_output = [](size_t, const parallel::StepReport& step) {
      return step.outcome != parallel::StepOutcome::kFailed;
    };
  }
  const bool progress =
      flags.progress == 1 || (flags.progress == -1 && ::isatty(STDERR_FILENO));
  if (!progress) return hooks;
  hooks.on_start = [status](size_t index) { status->Started(index); };
  hooks.on_end = [status](size_t index, const parallel::StepReport&) {
    status->Ended(index);
  };
  hooks.on_stopped = [status](size_t index, bool stopped) {
    status->Stopped(index, stopped);
  };
  hooks.before_output = [status] { status->Erase(); };
  return hooks;
}

}  // namespace

int main(int argc, char** argv) {
  struct sigaction pipe_action;
  const bool sigpipe_ignored =
      ::sigaction(SIGPIPE, nullptr, &pipe_action) == 0 &&
      pipe_action.sa_handler == SIG_IGN;
  Flags flags = ParseFlags(argc, argv);
  CheckReportPath("json", flags.json);
  CheckReportPath("junit", flags.junit);
  CheckReportPath("trace", flags.trace);
  CheckReportPath("timeline", flags.timeline);
  CheckReportPath("joblog", flags.joblog);
  if (!flags.dry_run) MakeResultsDir(flags.results);
  if ((flags.resume || flags.resume_failed) && flags.joblog.empty()) {
    UsageError("--resume and --resume-failed need --joblog=FILE");
  }
  if (std::vector<std::string> expanded, arguments;
      ExpandTemplate(flags, &expanded, &arguments)) {
    flags.commands = std::move(expanded);
    flags.tags = std::move(arguments);
  } else if (flags.link) {
    UsageError("--link needs ::: or :::: input sources");
  } else if (!flags.commands_given) {
    if (::fcntl(STDIN_FILENO, F_GETFD) == -1) UsageError("stdin is closed");
    struct stat st;
    if (::fstat(STDIN_FILENO, &st) == 0 && S_ISDIR(st.st_mode)) {
      UsageError("stdin is a directory, not a list of commands");
    }
    flags.commands = ReadCommands(std::cin);
  }

  // Each command's job number (1-based) in the whole list; --resume skips
  // some of them.
  std::vector<size_t> seqs;
  std::string joblog_before;  // kept when resuming: new lines are appended
  {
    std::map<size_t, tools::JoblogEntry> done;
    if (flags.resume || flags.resume_failed) {
      absl::StatusOr<std::map<size_t, tools::JoblogEntry>> log =
          tools::ReadJoblog(flags.joblog);
      if (!log.ok()) UsageError(std::string(log.status().message()));
      done = *std::move(log);
      std::ifstream in(flags.joblog);
      joblog_before.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::vector<std::string> left;
    std::vector<std::string> left_tags;
    for (size_t i = 0; i < flags.commands.size(); ++i) {
      const auto it = done.find(i + 1);
      if (it != done.end() && (flags.resume || it->second.succeeded())) {
        continue;
      }
      seqs.push_back(i + 1);
      left.push_back(std::move(flags.commands[i]));
      if (i < flags.tags.size()) left_tags.push_back(std::move(flags.tags[i]));
    }
    flags.commands = std::move(left);
    flags.tags = std::move(left_tags);
  }
  if (flags.dry_run) {
    for (const std::string& command : flags.commands) std::cout << command << "\n";
    return std::cout.flush() ? 0 : 1;
  }
  std::vector<parallel::Step> steps;
  steps.reserve(flags.commands.size());
  for (const std::string& command : flags.commands) {
    steps.push_back(parallel::Step::Shell(command));
  }
  // --tty: one command at a time has the terminal.
  UniqueTerminal terminal;
  if (flags.tty) {
    if (flags.jobs_given && flags.jobs != 1) {
      UsageError("--tty runs one command at a time: it cannot go with -j " +
                 std::to_string(flags.jobs));
    }
    flags.jobs = 1;
    flags.jobs_given = true;  // not make's jobserver either
    terminal.fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (terminal.fd < 0) {
      UsageError(absl::StrCat("--tty: cannot open the terminal /dev/tty: ",
                              std::strerror(errno)));
    }
  }
  if (flags.slurm_args_given && !flags.slurm) {
    UsageError("--slurm-args and --slurm-alloc-args need --slurm");
  }
  if (flags.slurm && flags.tty) {
    UsageError("--tty cannot go with --slurm: the commands run on cluster nodes");
  }
  std::unique_ptr<tools::JobserverClient> jobserver = MakeJobserver(flags);

  parallel::ParallelOptions options;
  options.max_parallel = jobserver != nullptr ? 0 : flags.jobs;
  options.halt_on_error = flags.halt_on_error;
  options.timeout = flags.timeout;
  options.silent_timeout = flags.silent_timeout;
  options.combine_stderr = false;  // stdout to stdout, stderr to stderr
  options.output_fd = STDOUT_FILENO;
  options.error_fd = STDERR_FILENO;
  options.temp_dir = flags.temp_dir;
  if (flags.slurm) {
    parallel::SlurmOptions slurm;
    slurm.srun_args = flags.slurm_args;
    slurm.salloc_args = flags.slurm_alloc_args;
    slurm.message_fd = STDERR_FILENO;
    options.launcher = parallel::SlurmLauncher(std::move(slurm));
    // One allocation for the whole run, sized to -j (the jobserver does not
    // reach the cluster).
    options.max_parallel = flags.jobs;
  }
  // The trace is written with the reports, from every attempt.

  StatusLine status(flags.commands);
  HaltState halt;
  parallel::RunHooks hooks =
      MakeHooks(flags, jobserver.get(), &status, seqs, flags.commands,
                flags.tags, &halt, flags.retries > 0);
  hooks.terminal_fd = terminal.fd;
  absl::StatusOr<parallel::RunReport> report =
      parallel::RunSteps(std::move(steps), options, hooks);
  status.Erase();
  if (!report.ok()) {
    std::cerr << "parallel_steps: " << report.status().message() << "\n";
    return kUsageError;
  }
  // --retries: the failed commands again, round by round.
  std::vector<tools::Attempts> attempts(report->steps.size());
  parallel::RunReport every = *report;
  std::vector<size_t> every_seq = seqs;
  for (int round = 0; round < flags.retries && report->interrupt_signal == 0 &&
                      !report->output_error;
       ++round) {
    std::vector<size_t> again;
    std::vector<size_t> again_seqs;
    std::vector<std::string> again_commands;
    std::vector<std::string> again_tags;
    std::vector<parallel::Step> retry;
    for (size_t i = 0; i < report->steps.size(); ++i) {
      if (report->steps[i].outcome != parallel::StepOutcome::kFailed) continue;
      again.push_back(i);
      again_seqs.push_back(seqs[i]);
      if (i < flags.tags.size()) again_tags.push_back(flags.tags[i]);
      again_commands.push_back(flags.commands[i]);
      retry.push_back(parallel::Step::Shell(flags.commands[i]));
    }
    if (again.empty()) break;
    StatusLine retry_status(again_commands);
    absl::StatusOr<parallel::RunReport> rerun = parallel::RunSteps(
        std::move(retry), options,
        MakeHooks(flags, jobserver.get(), &retry_status, again_seqs,
                  again_commands, again_tags, &halt,
                  round + 1 < flags.retries));
    retry_status.Erase();
    if (!rerun.ok()) {
      std::cerr << "parallel_steps: " << rerun.status().message() << "\n";
      return kUsageError;
    }
    for (size_t k = 0; k < again.size(); ++k) {
      parallel::StepReport& last = report->steps[again[k]];
      tools::Attempts& tries = attempts[again[k]];
      if (!tries.first_failure) {
        tries.first_failure = last.error;
        tries.first_tail = last.output_tail;
      }
      ++tries.count;
      last = rerun->steps[k];
      every.steps.push_back(rerun->steps[k]);
      every_seq.push_back(seqs[again[k]]);
    }
    report->interrupt_signal = rerun->interrupt_signal;
    report->output_error = rerun->output_error;
    report->output_errno = rerun->output_errno;
    every.end_time = rerun->end_time;
  }
  for (size_t i = 0; i < attempts.size(); ++i) {  // flaky: it passed at last
    if (report->steps[i].outcome != parallel::StepOutcome::kSucceeded) {
      attempts[i].first_failure.reset();
    }
  }
  jobserver.reset();  // every token back to make, whatever happened
  if (status.ever_shown()) {
    // Where the time went, in one line, where the status line was.
    std::cerr << tools::RunSummaryLine(*report) << "\n";
  }
  PrintSummary(*report);
  PrintFlaky(*report, attempts);
  const bool reports_written = WriteReports(flags, *report, attempts, every,
                                            every_seq, joblog_before);
  if (report->interrupt_signal != 0) {
    std::fflush(nullptr);
    signal(report->interrupt_signal, SIG_DFL);
    raise(report->interrupt_signal);
    return 128 + report->interrupt_signal;
  }
  size_t failed = report->failed_count();
  if (!reports_written) ++failed;  // CI must not read a pass it cannot see
  // --halt's exit status, as GNU parallel's: 0 when it fired on success;
  // the failing command's own status when it fired on fail=1.
  const bool halt_status = halt.fired && reports_written && !report->output_error;
  if (halt_status && flags.halt_on_success) return 0;
  if (halt_status && flags.halt_count == 1 && !flags.halt_percent) {
    const parallel::StepReport& step = halt.trigger;
    if (step.signal != 0) return 128 + step.signal;
    if (step.exit_code > 0) return std::min(step.exit_code, 255);
  }
  if (report->output_error) {
    // The reader went away (`| head`): end as a filter does, by SIGPIPE —
    // unless SIGPIPE was ignored when we started, then say so and exit 141.
    if (report->output_errno == EPIPE) {
      if (!sigpipe_ignored) {
        signal(SIGPIPE, SIG_DFL);
        raise(SIGPIPE);
      }
      std::cerr << "parallel_steps: " << report->output_error->message << "\n";
      return kBrokenPipeExit;
    }
    std::cerr << "parallel_steps: " << report->output_error->message << "\n";
    ++failed;  // the run's own failure to deliver its output
  }
  return failed > kMaxFailureExit ? kMaxFailureExit : static_cast<int>(failed);
}
