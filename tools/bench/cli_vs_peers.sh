#!/bin/bash
# Compares parallel_steps with GNU parallel -k and xargs -P2 on N trivial
# commands (`echo N`) with 2 slots, in the same invocation, and prints each
# median wall time and the ratios. Runs are interleaved (ours, GNU parallel,
# xargs, ours, ...) so that drift in the machine's load hits all alike.
# Ours also runs with --trace and --timeline (written to a temp dir), to show
# what recording the run costs.
#
#   bazel build -c opt //tools:parallel_steps && tools/bench/cli_vs_peers.sh [N] [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-2000}
runs=${2:-7}
tool=bazel-bin/tools/parallel_steps
[[ -x $tool ]] || { echo "build it first: bazel build -c opt //tools:parallel_steps" >&2; exit 1; }
command -v parallel >/dev/null || { echo "GNU parallel missing: run tools/setup.sh" >&2; exit 1; }

list=$(mktemp)
traced=$(mktemp -d)
trap 'rm -rf "$list" "$traced"' EXIT
for i in $(seq 1 "$n"); do echo "echo $i"; done >"$list"

seconds() {  # command...; the command list on stdin; prints wall seconds
  local start end
  start=$(date +%s.%N)
  "$@" <"$list" >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

ours=() gnu=() xargs_times=() ours_traced=()
for _ in $(seq 1 "$runs"); do
  ours+=("$(seconds "$tool" -j 2)")
  ours_traced+=("$(seconds "$tool" -j 2 --trace="$traced/t.json" --timeline="$traced/t.html")")
  gnu+=("$(seconds parallel -k -j 2 --group)")
  xargs_times+=("$(seconds xargs -P2 -I{} sh -c '{}')")
done

median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
o=$(median "${ours[@]}")
g=$(median "${gnu[@]}")
x=$(median "${xargs_times[@]}")
t=$(median "${ours_traced[@]}")

printf '%d commands, 2 slots, median of %d interleaved runs\n' "$n" "$runs"
printf '%-28s %8.3f s\n' "parallel_steps -j 2" "$o"
printf '%-28s %8.3f s   (%.3fx the time without)\n' "  with --trace --timeline" "$t" "$(echo "$t / $o" | bc -l)"
printf '%-28s %8.3f s   (%.1fx the time of ours)\n' "GNU parallel -k -j 2" "$g" "$(echo "$g / $o" | bc -l)"
printf '%-28s %8.3f s   (%.2fx the time of ours)\n' "xargs -P2 sh -c" "$x" "$(echo "$x / $o" | bc -l)"
