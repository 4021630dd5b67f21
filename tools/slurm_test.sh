#!/bin/bash
# parallel_steps --slurm on a real one-node Slurm cluster started for this
# test (tools/slurm/local_cluster.sh: Debian's slurmctld, slurmd and munge,
# installed by tools/setup.sh). Order and grouping, stderr, exit codes and
# signals of the remote tasks, timeout, halt, SIGINT and SIGTERM, a run
# inside an existing allocation, a killed srun, allocation failures and a
# request the cluster cannot grant now — and after each, nothing of ours left
# queued or running in the cluster (squeue). Skipped, with the reason, only
# when the daemons cannot run on this machine.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../testing/checks.sh"

tool="$(pwd)/tools/parallel_steps"
cluster_sh="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/slurm/local_cluster.sh"
# Slurm's sockets need a short path (108 bytes): not $TEST_TMPDIR.
cluster=$(mktemp -d /tmp/pslurm.XXXXXX)
work="${TEST_TMPDIR:-$cluster}/slurm_work"
mkdir -p "$work"
cd "$work"

stop_cluster() {
  "$cluster_sh" stop "$cluster" >/dev/null 2>&1
  rm -rf "$cluster"
}
trap stop_cluster EXIT


"$cluster_sh" start "$cluster" >start.out 2>start.err
case $? in
  0) ;;
  2)
    echo "SKIPPED: no Slurm cluster can run here: $(cat start.err)"
    exit 0
    ;;
  *)
    echo "FAIL: the local cluster did not start: $(cat start.err)" >&2
    exit 1
    ;;
esac
export SLURM_CONF=$cluster/slurm.conf
unset SLURM_JOB_ID

# No job and no job step of ours left in the cluster.
expect_nothing_left() {  # name
  local left
  left=$(squeue --noheader --format='%i %j %T'; squeue --steps --noheader --format='%i %j')
  expect_eq "$1: nothing left in the cluster" "" "$left"
}

# Grouped and in order, though later steps end first; stderr kept apart.
out=$("$tool" --slurm -j 2 -- 'sleep 0.6; echo one; echo one-err >&2' \
  'echo two; sleep 0.1; echo two-b' 'echo three' 2>err.txt)
expect_eq "order" $'one\ntwo\ntwo-b\nthree' "$out"
expect_eq "stderr" "one-err" "$(cat err.txt)"
expect_nothing_left "order"

# The remote task's exit code and signal, as for local steps.
"$tool" --slurm -j 2 --json=report.json -- 'exit 3' 'kill -SEGV $$' \
  'kill -KILL $$' true >/dev/null 2>err.txt
expect_eq "exit status counts failures" 3 $?
python3 - report.json <<'PY' || fail "codes and signals: $(cat report.json)"
import json, sys
steps = json.load(open(sys.argv[1]))
got = [(s["status"], s["exit_code"], s["signal"]) for s in steps]
want = [("failed", 3, None), ("failed", None, 11), ("failed", None, 9),
        ("passed", 0, None)]
assert got == want, got
assert "exited with code 3 on Slurm node" in steps[0]["error"], steps[0]
assert "signal 11 (SIGSEGV) on Slurm node" in steps[1]["error"], steps[1]
PY
grep -q 'srun: error: .*task 0: Exited with exit code 3' err.txt ||
  fail "srun's own line is in the failing step's stderr: $(cat err.txt)"
expect_nothing_left "codes"

# --timeout: srun is stopped, the job step cancelled.
start=$(date +%s)
"$tool" --slurm --timeout=1s --json=report.json -- 'sleep 60' >/dev/null 2>err.txt
expect_eq "timeout: one failure" 1 $?
(($(date +%s) - start < 30)) || fail "timeout: took $(($(date +%s) - start)) s"
grep -q 'ProcessTimeout' report.json || fail "timeout: $(cat report.json)"
expect_nothing_left "timeout"

# --halt-on-error: the other step is cancelled in the cluster.
"$tool" --slurm -j 2 --halt-on-error -- 'sleep 0.5; exit 1' 'sleep 60' >/dev/null 2>err.txt
status=$?
((status != 0)) || fail "halt: exit status 0"
expect_nothing_left "halt"

# SIGINT and SIGTERM while steps run: the tool dies of the signal and the
# job steps and the allocation are gone. (Python: a background job of this
# shell would ignore SIGINT.)
for sig in INT TERM; do
  python3 - "$tool" "$sig" <<'PY' || fail "SIG$sig: see above"
import signal, subprocess, sys, time
tool, name = sys.argv[1], sys.argv[2]
p = subprocess.Popen([tool, "--slurm", "-j", "2", "--", "sleep 60", "sleep 60"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
for _ in range(200):  # until both steps run in the cluster
    out = subprocess.run(["squeue", "--steps", "--noheader", "--format=%j"],
                         capture_output=True, text=True).stdout
    if out.count("parallel-") >= 2:
        break
    time.sleep(0.1)
else:
    sys.exit("the job steps never started")
p.send_signal(getattr(signal, "SIG" + name))
status = p.wait(timeout=60)
if status != -getattr(signal, "SIG" + name):
    sys.exit(f"exit status {status}, stderr {p.stderr.read()!r}")
PY
  expect_nothing_left "SIG$sig"
done

# Inside an existing allocation (as under sbatch): its job is used, no new
# one is asked for, and the allocation itself stays the caller's.
out=$(salloc --quiet -n 2 bash -c '"$0" --slurm -j 2 -- "echo in \$SLURM_JOB_ID" \
  "squeue --noheader --format=%i | wc -l"' "$tool" 2>err.txt)
job_lines=$(printf '%s\n' "$out" | tail -1)
expect_eq "inside an allocation: one job in the cluster" 1 "$job_lines"
[[ $out == "in "[0-9]* ]] || fail "inside an allocation: $out $(cat err.txt)"
expect_nothing_left "inside an allocation"

# srun itself SIGKILLed (the oldest srun process: srun forks a "shepherd")
# once the step's task runs: the step fails as killed, and the job step it
# left in the cluster is cancelled before the tool returns; the caller's
# allocation is left alone. (Killed before the task started, the step is one
# Slurm 22.05 cannot cancel at all: the tool then says so on stderr.)
job=$(salloc --no-shell -n 2 2>&1 | sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
if [[ -z $job ]]; then
  fail "could not get an allocation for the srun kill test"
else
  # sleep 67: a command line no other test runs (ctest runs tests side by side).
  SLURM_JOB_ID=$job "$tool" --slurm -- 'sleep 67' >/dev/null 2>err.txt &
  tool_pid=$!
  srun_pid=""
  running=0
  for _ in $(seq 300); do
    srun_pid=$(pgrep -f -o -- '--job-name=parallel-.* sleep 67' || true)
    # The task itself: srun runs it by its full path.
    if [[ -n $srun_pid ]] && pgrep -f '^(/[^ ]*/)?sleep 67$' >/dev/null; then
      running=1
      break
    fi
    sleep 0.1
  done
  ((running)) || fail "srun kill: the step's task never started (srun: ${srun_pid:-none})"
  [[ -n $srun_pid ]] && kill -KILL "$srun_pid"
  wait "$tool_pid"
  expect_eq "srun kill: one failure" 1 $?
  left=$(squeue --steps --noheader --format='%i %j %M' | grep parallel- || true)
  expect_eq "srun kill: no step of ours left" "" "$left"
  [[ -z $left ]] || echo "srun kill: the tool said: $(cat err.txt)" >&2
  expect_eq "srun kill: the caller's allocation stays" "$job" \
    "$(squeue --noheader --format=%i)"
  scancel "$job"
  for _ in $(seq 100); do
    [[ -z $(squeue --noheader) ]] && break
    sleep 0.1
  done
fi
expect_nothing_left "srun kill"

# An allocation that cannot be had: a one-line error, exit 255.
"$tool" --slurm --slurm-alloc-args=--partition=nope -- true >out.txt 2>err.txt
expect_eq "bad partition: exit status" 255 $?
expect_eq "bad partition: one line" 1 "$(wc -l <err.txt)"
grep -q 'Slurm: salloc could not get an allocation of .*Invalid partition' err.txt ||
  fail "bad partition: $(cat err.txt)"
expect_eq "bad partition: nothing ran" "" "$(cat out.txt)"
"$tool" --slurm-args=--mem=1G -- true >/dev/null 2>err.txt
expect_eq "--slurm-args without --slurm" 255 $?
expect_nothing_left "bad partition"

# More than the cluster has up: Slurm queues the allocation; the tool says
# so on stderr and waits, and SIGTERM ends the wait with nothing left.
"$tool" --slurm -j 64 -- true >/dev/null 2>err.txt &
tool_pid=$!
for _ in $(seq 100); do
  grep -q 'waiting for a Slurm allocation of 64 tasks' err.txt && break
  sleep 0.1
done
grep -q 'waiting for a Slurm allocation of 64 tasks (.*not available now)' err.txt ||
  fail "waiting line: $(cat err.txt)"
kill -TERM "$tool_pid"
wait "$tool_pid"
expect_eq "SIGTERM while waiting for an allocation" 143 $?
expect_nothing_left "waiting"

# A busy cluster: another job holds every CPU. The tool says it waits, and
# runs once the other job ends.
holder=$(salloc --no-shell -n 2 2>&1 | sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
"$tool" --slurm -j 1 -- 'echo ran' >out.txt 2>err.txt &
tool_pid=$!
for _ in $(seq 100); do
  grep -q 'waiting for a Slurm allocation of 1 tasks' err.txt && break
  sleep 0.1
done
grep -q 'waiting for a Slurm allocation of 1 tasks (.*busy.*)' err.txt ||
  fail "busy cluster: waiting line: $(cat err.txt)"
[[ -n $holder ]] && scancel "$holder"
wait "$tool_pid"
expect_eq "busy cluster: exit status once the other job ended" 0 $?
expect_eq "busy cluster: output" "ran" "$(cat out.txt)"
expect_nothing_left "busy cluster"

end_checks "Slurm checks"
