#!/bin/bash
# Compares parallel_steps with GNU parallel -k and xargs -P2 on N trivial
# commands (`echo N`) with 2 slots, in the same invocation, and prints each
# median wall time and the ratios.
#
#   bazel build -c opt //tools:parallel_steps && tools/bench/cli_vs_peers.sh [N] [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-2000}
runs=${2:-5}
tool=bazel-bin/tools/parallel_steps
[[ -x $tool ]] || { echo "build it first: bazel build -c opt //tools:parallel_steps" >&2; exit 1; }
command -v parallel >/dev/null || { echo "GNU parallel missing: run tools/setup.sh" >&2; exit 1; }

list=$(mktemp)
trap 'rm -f "$list"' EXIT
for i in $(seq 1 "$n"); do echo "echo $i"; done >"$list"

median() {  # command...; the command list on stdin; median wall time, seconds
  local times=()
  for _ in $(seq 1 "$runs"); do
    local start end
    start=$(date +%s.%N)
    "$@" <"$list" >/dev/null
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
}

ours=$(median "$tool" -j 2)
gnu=$(median parallel -k -j 2 --group)
xargs_time=$(median xargs -P2 -I{} sh -c '{}')

printf '%-28s %8.3f s\n' "parallel_steps -j 2" "$ours"
printf '%-28s %8.3f s   (%.1fx ours)\n' "GNU parallel -k -j 2" "$gnu" "$(echo "$gnu / $ours" | bc -l)"
printf '%-28s %8.3f s   (%.2fx ours)\n' "xargs -P2 sh -c" "$xargs_time" "$(echo "$xargs_time / $ours" | bc -l)"
