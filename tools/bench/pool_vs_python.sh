#!/bin/bash
# Per-input overhead of a trivial task with 2 workers: BackgroundTaskRunner
# and RunTasksInProcessPool against the C pool baseline (BM_CPoolBaseline:
# two pre-forked C workers, the floor of this design), Python's
# multiprocessing.Pool.imap(chunksize=1) and
# concurrent.futures.ProcessPoolExecutor, in the same invocation. Ours and
# the baseline: medians of 3 repetitions of 10,000 inputs.
#
#   tools/bench/pool_vs_python.sh [inputs]
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-10000}
bazel build -c opt //parallel:task_runner_benchmark >/dev/null 2>&1

bench=$(bazel-bin/parallel/task_runner_benchmark \
  --benchmark_filter='BM_TrivialInputs|BM_RunTasksInProcessPool|BM_CPoolBaseline' \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>/dev/null)
median() {  # benchmark name -> per-input microseconds
  awk -v name="$1" 'index($1, name "/") == 1 && /median/ {
    for (i = 1; i <= NF; ++i) if ($i ~ /^per_input=/) {
      v = $i; sub("per_input=", "", v)
      if (v ~ /ms$/) { sub("ms$", "", v); v *= 1000 } else if (v ~ /ns$/) { sub("ns$", "", v); v /= 1000 } else if (v ~ /us$/) sub("us$", "", v); else if (v ~ /s$/) { sub("s$", "", v); v *= 1000000 }
      printf "%.3f\n", v; exit
    } }' <<<"$bench"
}
ours_us=$(median BM_TrivialInputs/10000)
pool_us=$(median BM_RunTasksInProcessPool/10000)
floor_us=$(median BM_CPoolBaseline/10000)
# A runner's start and end (its thread, two forks, the reaping), measured
# with one input: ours include it, Python's figures below do not (its Pool
# is made before the clock starts), so the marginal cost is printed too.
ours_start_us=$(median BM_TrivialInputs/1)
pool_start_us=$(median BM_RunTasksInProcessPool/1)
marginal() {  # per-input us at 10000, start-up us -> per-input us without it
  echo "($1 * 10000 - $2) / 9999" | bc -l
}

python=$(python3 - "$n" <<'PY'
import sys, time, multiprocessing, concurrent.futures
n = int(sys.argv[1])
def task(i):
    return i
if __name__ == "__main__":
    results = []
    with multiprocessing.Pool(2) as pool:
        for _ in range(3):
            start = time.perf_counter()
            for _ in pool.imap(task, range(n), chunksize=1):
                pass
            results.append((time.perf_counter() - start) / n * 1e6)
    results.sort()
    imap = results[1]
    results = []
    with concurrent.futures.ProcessPoolExecutor(2) as executor:
        for _ in range(3):
            start = time.perf_counter()
            list(executor.map(task, range(n)))
            results.append((time.perf_counter() - start) / n * 1e6)
    results.sort()
    print(f"{imap:.1f} {results[1]:.1f}")
PY
)
read -r imap executor <<<"$python"
row() {  # label us
  printf '%-46s %8.1f us/input  %5.2fx the C baseline, %4.2fx faster than Pool.imap\n' \
    "$1" "$2" "$(echo "$2 / $floor_us" | bc -l)" "$(echo "$imap / $2" | bc -l)"
}
row "BackgroundTaskRunner (2 workers)" "$ours_us"
row "RunTasksInProcessPool (2 workers)" "$pool_us"
row "  BackgroundTaskRunner, start/end excluded" "$(marginal "$ours_us" "$ours_start_us")"
row "  RunTasksInProcessPool, start/end excluded" "$(marginal "$pool_us" "$pool_start_us")"
row "C pool baseline (BM_CPoolBaseline)" "$floor_us"
printf '%-46s %8.1f us/input  (%.1fx BackgroundTaskRunner)\n' "multiprocessing.Pool(2).imap(chunksize=1)" "$imap" "$(echo "$imap / $ours_us" | bc -l)"
printf '%-46s %8.1f us/input  (%.1fx BackgroundTaskRunner)\n' "ProcessPoolExecutor(2).map" "$executor" "$(echo "$executor / $ours_us" | bc -l)"
