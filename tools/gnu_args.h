// GNU parallel's command templates for parallel_steps: replacement strings
// and input sources.
//
//   parallel_steps gzip {} ::: a.log b.log        # gzip a.log; gzip b.log
//   ls *.c | parallel_steps cc -c {}               # a command per stdin line
//   parallel_steps 'convert {} {.}.png' :::: list  # arguments from a file
//
// Replacement strings: {} the argument, {.} without its extension, {/} its
// base name, {//} its directory, {/.} the base name without extension, {#}
// the job number (1, 2, ...), {%} the job slot (1..jobs; the shell's
// $PARALLEL_JOBSLOT, which the library sets for each command), and {N}, {N.}, {N/}, {N//}, {N/.} for the N-th
// input source's argument. With several sources the jobs are their cross
// product (the last source varying fastest), or with `link` they are taken
// side by side (shorter sources wrap around, as GNU parallel's --link). An
// argument is shell-quoted when substituted (unless it needs no quoting);
// a template without any replacement string gets the arguments appended.
//
// Thread-safety: thread-safe (no state).

#ifndef TOOLS_GNU_ARGS_H_
#define TOOLS_GNU_ARGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tools {

// `text` as one shell word: itself if it has only characters no shell
// treats specially, else in single quotes.
std::string ShellQuote(absl::string_view text);

// Whether `word` holds a replacement string ({}, {.}, {1}, {#}, ...).
bool HasReplacementString(absl::string_view word);

// The command for one job: `command` with its replacement strings filled
// from `args` (one per input source) and `job` (1-based), or `args`
// appended when it has none.
std::string FillTemplate(absl::string_view command,
                         const std::vector<std::string>& args, size_t job);

// Every job's command: `sources` crossed (or linked), each filled in. An
// empty source gives no jobs. Fails (kInvalidArgument, naming it) on a
// positional replacement string beyond the number of sources. With
// `arguments`, also each job's arguments joined by spaces (what GNU
// parallel's --tag puts before its lines).
absl::StatusOr<std::vector<std::string>> ExpandTemplate(
    absl::string_view command, const std::vector<std::vector<std::string>>& sources,
    bool link, std::vector<std::string>* arguments = nullptr);

}  // namespace tools

#endif  // TOOLS_GNU_ARGS_H_
