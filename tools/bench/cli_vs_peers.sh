#!/bin/bash
# Compares parallel_steps with GNU parallel -k, xargs -P2 and a C
# posix_spawn loop (tools/bench/spawn_loop.c: no capture, no order — the
# physical limit) on N trivial commands (`echo N`) with 2 slots, in the same
# invocation, and prints each median wall time and the ratios. Two forms:
# whole command lines on stdin, and GNU parallel's template form
# (`echo {} ::: $(seq N)`). Runs are interleaved (ours, GNU parallel, xargs,
# C, ours, ...) so that drift in the machine's load hits all alike. Ours
# also runs with --trace and --timeline (written to a temp dir), to show
# what recording the run costs.
#
#   bazel build -c opt //tools:parallel_steps //tools/bench:spawn_loop &&
#     tools/bench/cli_vs_peers.sh [N] [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-2000}
runs=${2:-7}
tool=bazel-bin/tools/parallel_steps
spawn_loop=bazel-bin/tools/bench/spawn_loop
for binary in "$tool" "$spawn_loop"; do
  [[ -x $binary ]] || {
    echo "build it first: bazel build -c opt //tools:parallel_steps //tools/bench:spawn_loop" >&2
    exit 1
  }
done
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

numbers=$(seq 1 "$n")
template_seconds() {  # tool args...; `echo {} ::: 1..N` after the args
  local start end
  start=$(date +%s.%N)
  # shellcheck disable=SC2086  # one argument per number
  "$@" echo {} ::: $numbers </dev/null >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

ours=() gnu=() xargs_times=() ours_traced=() c_loop=()
ours_template=() gnu_template=()
for _ in $(seq 1 "$runs"); do
  ours+=("$(seconds "$tool" -j 2)")
  ours_traced+=("$(seconds "$tool" -j 2 --trace="$traced/t.json" --timeline="$traced/t.html")")
  gnu+=("$(seconds parallel -k -j 2 --group)")
  xargs_times+=("$(seconds xargs -P2 -I{} sh -c '{}')")
  c_loop+=("$(seconds "$spawn_loop" 2)")
  ours_template+=("$(template_seconds "$tool" -j 2)")
  gnu_template+=("$(template_seconds parallel -k -j 2)")
done

median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
o=$(median "${ours[@]}")
g=$(median "${gnu[@]}")
x=$(median "${xargs_times[@]}")
t=$(median "${ours_traced[@]}")
c=$(median "${c_loop[@]}")
ot=$(median "${ours_template[@]}")
gt=$(median "${gnu_template[@]}")

printf '%d commands, 2 slots, median of %d interleaved runs\n' "$n" "$runs"
printf '%-28s %8.3f s\n' "parallel_steps -j 2" "$o"
printf '%-28s %8.3f s   (%.3fx the time without)\n' "  with --trace --timeline" "$t" "$(echo "$t / $o" | bc -l)"
printf '%-28s %8.3f s   (%.1fx the time of ours)\n' "GNU parallel -k -j 2" "$g" "$(echo "$g / $o" | bc -l)"
printf '%-28s %8.3f s   (%.2fx the time of ours)\n' "xargs -P2 sh -c" "$x" "$(echo "$x / $o" | bc -l)"
printf '%-28s %8.3f s   (ours is %.3fx this)\n' "C posix_spawn loop -j 2" "$c" "$(echo "$o / $c" | bc -l)"
printf 'template form: echo {} ::: $(seq %d)\n' "$n"
printf '%-28s %8.3f s   (%.3fx the C loop)\n' "parallel_steps -j 2" "$ot" "$(echo "$ot / $c" | bc -l)"
printf '%-28s %8.3f s   (%.1fx the time of ours)\n' "GNU parallel -k -j 2" "$gt" "$(echo "$gt / $ot" | bc -l)"
