#!/bin/bash
# Per-task overhead of a trivial task with 2 workers, in one invocation:
# ProcessPoolExecutor (Submit+Get one at a time, and Map) and the C baselines
# (//parallel:executor_benchmark: one request in flight per worker, as the
# issue defines the floor, and, for reference, eight in flight as ours keep),
# against Python's
# ProcessPoolExecutor.map and Pool.imap (chunksize 1), Pool.apply_async with
# callbacks, pebble's ProcessPool.schedule and loky's reusable executor.
# Medians of 3; ratios against our Map.
#
#   tools/bench/executor_vs_python.sh [tasks]
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-10000}
# Debian's Python, which has python3-pebble and python3-joblib (tools/setup.sh).
py=/usr/bin/python3
bazel build -c opt //parallel:executor_benchmark >/dev/null 2>&1

declare -A ours
while read -r name value; do
  ours[$name]=$value
done < <(bazel-bin/parallel/executor_benchmark --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true 2>/dev/null |
  awk '/_median/ {
    name = $1; sub("/.*", "", name)
    for (i = 1; i <= NF; ++i) if ($i ~ /^per_task=/) {
      v = $i; sub("per_task=", "", v)
      if (v ~ /ms$/) { sub("ms$", "", v); v *= 1000 } else if (v ~ /us$/) { sub("us$", "", v) } else if (v ~ /ns$/) { sub("ns$", "", v); v /= 1000 }
      print name, v
    }
  }')

python=$("$py" - "$n" <<'PY'
import sys, time, threading, multiprocessing, concurrent.futures
n = int(sys.argv[1])

def task(i):
    return i

def median(run):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / n * 1e6)
    return sorted(times)[1]

def apply_async(pool):
    done = threading.Event()
    left = [n]
    lock = threading.Lock()
    def callback(_):
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()
    for i in range(n):
        pool.apply_async(task, (i,), callback=callback, error_callback=callback)
    done.wait()

if __name__ == "__main__":
    out = {}
    with concurrent.futures.ProcessPoolExecutor(2) as executor:
        executor.submit(task, 0).result()  # workers started
        out["ppe_map"] = median(lambda: list(executor.map(task, range(n))))
    with multiprocessing.Pool(2) as pool:
        out["pool_imap"] = median(lambda: list(pool.imap(task, range(n), chunksize=1)))
        out["pool_apply_async"] = median(lambda: apply_async(pool))
    try:
        import pebble
        with pebble.ProcessPool(max_workers=2) as pool:
            pool.schedule(task, args=(0,)).result()
            out["pebble"] = median(lambda: [f.result() for f in
                                            [pool.schedule(task, args=(i,)) for i in range(n)]])
    except ImportError:
        out["pebble"] = float("nan")
    try:
        from joblib.externals.loky import get_reusable_executor
        executor = get_reusable_executor(max_workers=2)
        executor.submit(task, 0).result()
        out["loky"] = median(lambda: list(executor.map(task, range(n))))
        executor.shutdown()
    except ImportError:
        out["loky"] = float("nan")
    print(" ".join(f"{k}={v:.1f}" for k, v in out.items()))
PY
)
declare -A peer
for pair in $python; do peer[${pair%%=*}]=${pair#*=}; done

map=${ours[BM_ExecutorMap]}
row() {  # label, us per task
  printf '  %-52s %8.1f us/task  %6.2fx our Map\n' "$1" "$2" "$(echo "$2 / $map" | bc -l)"
}
echo "$n trivial tasks, 2 workers, median of 3 (lower is better):"
row "parallel::ProcessPoolExecutor::Map" "$map"
row "parallel::ProcessPoolExecutor Submit+Get, one at a time" "${ours[BM_ExecutorSubmitGet]}"
row "C baseline: pre-forked workers, both busy (Map floor)" "${ours[BM_BaselineMap]}"
row "C baseline: one round trip at a time (Submit+Get floor)" "${ours[BM_BaselineRoundTrip]}"
row "C baseline: 8 requests in flight per worker, as ours" "${ours[BM_BaselinePipelinedMap]}"
row "concurrent.futures.ProcessPoolExecutor(2).map" "${peer[ppe_map]}"
row "multiprocessing.Pool(2).imap(chunksize=1)" "${peer[pool_imap]}"
row "multiprocessing.Pool(2).apply_async + callback" "${peer[pool_apply_async]}"
row "pebble.ProcessPool(2).schedule" "${peer[pebble]}"
row "loky reusable executor(2).map" "${peer[loky]}"
printf 'Targets: Map >= 3x faster than Pool.imap (%.2fx), >= 10x ProcessPoolExecutor.map (%.2fx),\n' \
  "$(echo "${peer[pool_imap]} / $map" | bc -l)" "$(echo "${peer[ppe_map]} / $map" | bc -l)"
printf '         Map within 1.5x of the C baseline (%.2fx), Submit+Get within 2x of its round trip (%.2fx)\n' \
  "$(echo "$map / ${ours[BM_BaselineMap]}" | bc -l)" \
  "$(echo "${ours[BM_ExecutorSubmitGet]} / ${ours[BM_BaselineRoundTrip]}" | bc -l)"
printf '(not a target) Map against the pipelined C floor: %.2fx\n' \
  "$(echo "$map / ${ours[BM_BaselinePipelinedMap]}" | bc -l)"
