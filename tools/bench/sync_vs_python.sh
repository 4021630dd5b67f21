#!/bin/bash
# parallel/sync.h against Python's multiprocessing (fork context), in one
# invocation, two processes each: Queue put+get round trip, Pipe round trip,
# Lock acquire+release uncontended and contended by a second process, Event
# ping-pong. Ours: //parallel:sync_benchmark (-c opt, median of 3
# repetitions); Python: median of 3 timed loops. Prints per-operation times
# and how many times faster ours is, and for the locks the hardware's floor
# (BM_Floor*: a bare CAS + exchange on a shared word) measured in the same
# run.
#
#   tools/bench/sync_vs_python.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
py=/usr/bin/python3
bazel build -c opt //parallel:sync_benchmark >/dev/null 2>&1
ours_json=$(mktemp)
trap 'rm -f "$ours_json"' EXIT
bazel-bin/parallel/sync_benchmark --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=json \
  >"$ours_json" 2>/dev/null

"$py" - "$ours_json" <<'PY'
import json, multiprocessing as mp, sys, time

ours = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") == "median":
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3}[b["time_unit"]]
        ours[b["run_name"].split("/")[0]] = b["real_time"] * scale  # us

def queue_echo(there, back):
    while True:
        v = there.get()
        back.put(v)
        if v < 0:
            return

def queue_round_trip(n):
    there, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=queue_echo, args=(there, back)); p.start()
    there.put(0); back.get()  # warm
    start = time.perf_counter()
    for i in range(n):
        there.put(i); back.get()
    elapsed = time.perf_counter() - start
    there.put(-1); back.get(); p.join()
    return elapsed

def pipe_echo(end, other):
    other.close()
    try:
        while True:
            end.send(end.recv())
    except EOFError:
        pass

def pipe_round_trip(n):
    a, b = mp.Pipe()
    p = mp.Process(target=pipe_echo, args=(b, a)); p.start()
    b.close()
    start = time.perf_counter()
    for i in range(n):
        a.send(i); a.recv()
    elapsed = time.perf_counter() - start
    a.close(); p.join()
    return elapsed

def lock_uncontended(n):
    lock = mp.Lock()
    start = time.perf_counter()
    for _ in range(n):
        lock.acquire(); lock.release()
    return time.perf_counter() - start

def rival(lock, stop, running):
    running.set()
    while not stop.is_set():
        lock.acquire(); lock.release()

def lock_contended(n):
    lock, stop, running = mp.Lock(), mp.Event(), mp.Event()
    p = mp.Process(target=rival, args=(lock, stop, running)); p.start()
    running.wait()
    start = time.perf_counter()
    for _ in range(n):
        lock.acquire(); lock.release()
    elapsed = time.perf_counter() - start
    stop.set(); p.join()
    return elapsed

def player(ping, pong, stop):
    while True:
        ping.wait(); ping.clear()
        if stop.is_set():
            return
        pong.set()

def event_ping_pong(n):
    ping, pong, stop = mp.Event(), mp.Event(), mp.Event()
    p = mp.Process(target=player, args=(ping, pong, stop)); p.start()
    start = time.perf_counter()
    for _ in range(n):
        ping.set(); pong.wait(); pong.clear()
    elapsed = time.perf_counter() - start
    stop.set(); ping.set(); p.join()
    return elapsed

def timed(f, n):
    times = sorted(f(n) / n * 1e6 for _ in range(3))
    return times[1]

if __name__ == "__main__":
    mp.set_start_method("fork")
    rows = [
        ("Queue put+get round trip", "BM_QueueRoundTrip", timed(queue_round_trip, 5000)),
        ("Pipe send+recv round trip", "BM_PipeRoundTrip", timed(pipe_round_trip, 10000)),
        ("Lock acquire+release", "BM_LockUncontended", timed(lock_uncontended, 1000000)),
        ("Lock, contended by 2 processes", "BM_LockContendedByTwoProcesses", timed(lock_contended, 200000)),
        ("Event ping-pong", "BM_EventPingPong", timed(event_ping_pong, 5000)),
    ]
    floors = {"BM_LockUncontended": "BM_FloorLockWordUncontended",
              "BM_LockContendedByTwoProcesses": "BM_FloorLockWordContendedByTwoProcesses"}
    print("%-32s %12s %12s %10s" % ("per operation", "ours", "Python", "ours is"))
    for label, name, python in rows:
        mine = ours[name]
        print("%-32s %9.3f us %9.3f us %8.1fx faster" % (label, mine, python, python / mine))
    print()
    print("The hardware's floor for a lock (CAS to take a word, exchange to give it back):")
    for name, floor in floors.items():
        print("%-32s %9.3f us   ours is %.2fx the floor; at the floor Python would be %.1fx slower"
              % (name, ours[floor], ours[name] / ours[floor],
                 dict((n, p) for _, n, p in rows)[name] / ours[floor]))
PY
