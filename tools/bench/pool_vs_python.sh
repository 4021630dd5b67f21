#!/bin/bash
# Per-input overhead of a trivial task with 2 workers: BackgroundTaskRunner /
# RunTasksInProcessPool against Python's multiprocessing.Pool.imap(chunksize=1)
# and concurrent.futures.ProcessPoolExecutor, in the same invocation.
#
#   tools/bench/pool_vs_python.sh [inputs]
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-10000}
bazel build -c opt //parallel:task_runner_benchmark >/dev/null 2>&1

ours=$(bazel-bin/parallel/task_runner_benchmark --benchmark_filter=BM_TrivialInputs \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>/dev/null |
  awk '/median/ { for (i = 1; i <= NF; ++i) if ($i ~ /^per_input=/) { sub("per_input=", "", $i); print $i } }')

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
ours_us=$(echo "$ours" | sed 's/us$//')
printf '%-46s %8.1f us/input\n' "BackgroundTaskRunner (2 workers)" "$ours_us"
printf '%-46s %8.1f us/input  (%.1fx ours)\n' "multiprocessing.Pool(2).imap(chunksize=1)" "$imap" "$(echo "$imap / $ours_us" | bc -l)"
printf '%-46s %8.1f us/input  (%.1fx ours)\n' "ProcessPoolExecutor(2).map" "$executor" "$(echo "$executor / $ours_us" | bc -l)"
