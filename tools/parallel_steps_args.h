// parallel_steps' command line: its flags, and where its commands come
// from (the words themselves, a GNU parallel template with ::: / :::: or
// stdin lines, or one command per stdin line). Bad usage is a one-line
// error on stderr and exit status 255 (kUsageError), never an exception.
//
// Thread-safety: called from main() before anything runs.

#ifndef TOOLS_PARALLEL_STEPS_ARGS_H_
#define TOOLS_PARALLEL_STEPS_ARGS_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "parallel/parallel.h"

namespace tools {

// The exit status of bad usage.
inline constexpr int kUsageError = 255;

// Every flag of parallel_steps, parsed; `commands` are the words after the
// flags until FillCommands() turns them into the command lines to run.
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

// Writes "parallel_steps: <message> (see parallel_steps --help)" to stderr
// and exits with kUsageError.
[[noreturn]] void UsageError(const std::string& message);

// Parses argv; --help and --version print and exit 0; a bad flag or value
// is a UsageError.
Flags ParseFlags(int argc, char** argv);

// Turns flags->commands into the command lines to run: a GNU parallel
// template (`words ::: args`, `:::: files`, or a replacement string fed by
// stdin lines) is expanded, each command's arguments going to flags->tags;
// with no words at all, stdin gives one command per line (blank lines and
// #-comments skipped); otherwise the words are the commands. A NUL byte in
// a line, a closed stdin or a directory as stdin is a UsageError.
void FillCommands(Flags* flags);

}  // namespace tools

#endif  // TOOLS_PARALLEL_STEPS_ARGS_H_
