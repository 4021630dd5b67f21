#!/bin/bash
# gtest_parallel (its default, auto batches, and --batch_size=1: one test
# per process) against
# google/gtest-parallel (Python) and a bare baseline (xargs -P2 running the
# same per-test commands), 2 workers each, on a binary's 2,000 trivial tests
# and on its 200 tests of 10 ms; runs are interleaved, medians and ratios
# printed. "Ideal" is the time the tests themselves take in one process of
# the binary, over 2 workers: no runner and no process start beyond one
# (200 x 10 ms / 2 would be 1.00 s; a usleep(10 ms) takes a little longer).
#
#   tools/bench/gtest_parallel_vs_peer.sh [path/to/gtest_parallel.py] [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."

peer=${1:-../shared/peers/gtest-parallel/gtest_parallel.py}
runs=${2:-3}
bazel build -c opt //tools:gtest_parallel //tools/bench:gtest_bench_tests >/dev/null 2>&1
ours=bazel-bin/tools/gtest_parallel
tests=bazel-bin/tools/bench/gtest_bench_tests
have_peer=1
if [[ ! -f $peer ]]; then
  echo "gtest-parallel not found at '$peer': its column is skipped" >&2
  have_peer=0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

seconds() {  # command...: wall seconds, with a fresh times cache
  local start end
  rm -rf "$scratch/cache"
  start=$(date +%s.%N)
  XDG_CACHE_HOME="$scratch/cache" "$@" >/dev/null 2>&1 || true
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

baseline() {  # filter: each test as its own process, 2 at a time
  "$tests" --gtest_list_tests --gtest_filter="$1" |
    awk '/^[^ ]/ { suite = $1; next } { print suite $1 }' |
    xargs -P 2 -I{} "$tests" --gtest_filter={}
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

for filter in 'Many/Trivial.*' 'Some/Sleepy.*'; do
  o=() p=() b=() o1=() one=()
  for _ in $(seq 1 "$runs"); do
    o+=("$(seconds "$ours" -w 2 --gtest_filter="$filter" "$tests")")
    o1+=("$(seconds "$ours" -w 2 --batch_size=1 --gtest_filter="$filter" "$tests")")
    if ((have_peer)); then
      p+=("$(seconds python3 "$peer" -w 2 --gtest_filter="$filter" "$tests")")
    fi
    b+=("$(seconds baseline "$filter")")
    one+=("$(seconds "$tests" --gtest_filter="$filter")")
  done
  mo=$(printf '%s\n' "${o[@]}" | median)
  mb=$(printf '%s\n' "${b[@]}" | median)
  echo "$filter (2 workers, median of $runs):"
  m1=$(printf '%s\n' "${o1[@]}" | median)
  printf '  gtest_parallel (ours)      %6.2f s\n' "$mo"
  printf '  ours, --batch_size=1       %6.2f s\n' "$m1"
  if ((have_peer)); then
    mp=$(printf '%s\n' "${p[@]}" | median)
    printf '  gtest-parallel (Python)    %6.2f s  (%.1fx ours, %.2fx ours one per process)\n' "$mp" \
      "$(echo "$mp / $mo" | bc -l)" "$(echo "$mp / $m1" | bc -l)"
  fi
  printf '  xargs -P2 baseline         %6.2f s  (ours one per process is %.2fx it)\n' "$mb" \
    "$(echo "$m1 / $mb" | bc -l)"
  if [[ $filter == Some/* ]]; then
    ideal=$(echo "$(printf '%s\n' "${one[@]}" | median) / 2" | bc -l)
    printf '  ideal (one process / 2)    %6.2f s  (ours is %.2fx it, one per process %.2fx)\n' "$ideal" \
      "$(echo "$mo / $ideal" | bc -l)" "$(echo "$m1 / $ideal" | bc -l)"
  fi
done
