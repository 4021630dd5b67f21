#!/bin/bash
# gtest_parallel (one test per process, and --batch_size=50) against
# google/gtest-parallel (Python) and a bare baseline (xargs -P2 running the
# same per-test commands), 2 workers each, on a binary's 2,000 trivial tests
# and on its 200 tests of 10 ms; runs are interleaved, medians and ratios
# printed. "Ideal" for the 10 ms tests is
# their total test time over 2 workers (1.0 s), with no process start at all.
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
  o=() p=() b=() o50=()
  for _ in $(seq 1 "$runs"); do
    o+=("$(seconds "$ours" -w 2 --gtest_filter="$filter" "$tests")")
    o50+=("$(seconds "$ours" -w 2 --batch_size=50 --gtest_filter="$filter" "$tests")")
    if ((have_peer)); then
      p+=("$(seconds python3 "$peer" -w 2 --gtest_filter="$filter" "$tests")")
    fi
    b+=("$(seconds baseline "$filter")")
  done
  mo=$(printf '%s\n' "${o[@]}" | median)
  mb=$(printf '%s\n' "${b[@]}" | median)
  echo "$filter (2 workers, median of $runs):"
  m50=$(printf '%s\n' "${o50[@]}" | median)
  printf '  gtest_parallel (ours)      %6.2f s\n' "$mo"
  printf '  ours, --batch_size=50      %6.2f s\n' "$m50"
  if ((have_peer)); then
    mp=$(printf '%s\n' "${p[@]}" | median)
    printf '  gtest-parallel (Python)    %6.2f s  (%.2fx ours, %.1fx ours batched)\n' "$mp" \
      "$(echo "$mp / $mo" | bc -l)" "$(echo "$mp / $m50" | bc -l)"
  fi
  printf '  xargs -P2 baseline         %6.2f s  (ours is %.2fx it)\n' "$mb" "$(echo "$mo / $mb" | bc -l)"
  if [[ $filter == Some/* ]]; then
    printf '  ideal (200 x 10 ms / 2)      1.00 s  (ours is %.2fx it, batched %.2fx)\n' "$mo" "$m50"
  fi
done
