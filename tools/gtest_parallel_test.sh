#!/bin/bash
# End-to-end tests of gtest_parallel against a real gtest binary with
# passing, failing, crashing, hanging, flaky, disabled, parameterized and
# typed tests (gtest_parallel_sample.cc).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../testing/checks.sh"

tool="$(pwd)/tools/gtest_parallel"
sample="$(pwd)/tools/gtest_parallel_sample"
work="${TEST_TMPDIR:-$(mktemp -d)}/gtest_parallel"
mkdir -p "$work"
cd "$work"
export XDG_CACHE_HOME="$work/cache"
export FLAKY_COUNTER="$work/flaky_counter"

# Everything, with a timeout and one retry.
rm -f "$FLAKY_COUNTER"
"$tool" -w 2 --timeout=2 --retry_failed=1 --dump_json_test_results=all.json \
  --junit=all.xml "$sample" >all.txt 2>&1
expect_eq "exit status with failures" 1 $?
grep -q "marker-fail" all.txt || fail "failing test's output missing: $(cat all.txt)"
grep -q "^\[  FAILED  \] Crash.Abort (gtest_parallel_sample): killed by signal 6 (SIGABRT)" all.txt ||
  fail "crash header: $(grep FAILED all.txt)"
grep -q "^\[  FAILED  \] Hang.Sleeps (gtest_parallel_sample): timed out" all.txt || fail "timeout header"
grep -q "output of Pass.One" all.txt && fail "a passing test's output was printed"
grep -q "disabled .* ran" all.txt && fail "a disabled test ran"
sed -n '/^FAILED TESTS (3):/,/^FLAKY/p' all.txt | grep -q "Fail.Expect" || fail "summary: $(tail -12 all.txt)"
sed -n '/^FLAKY TESTS/,$p' all.txt | grep -q "Flaky.PassesOnRetry" || fail "flaky not reported: $(tail -12 all.txt)"
python3 - <<'PY' || fail "JSON/JUnit results: $(cat all.json)"
import json
import xml.etree.ElementTree as ET
r = json.load(open("all.json"))
t = r["tests"]
assert r["version"] == 3 and r["path_delimiter"] == "."
assert t["Pass"]["One"]["actual"] == "PASS", t["Pass"]
assert t["Fail"]["Expect"]["actual"] == "FAIL FAIL", t["Fail"]
assert t["Hang"]["Sleeps"]["actual"] == "TIMEOUT TIMEOUT", t["Hang"]
assert t["Flaky"]["PassesOnRetry"]["actual"] == "FAIL PASS", t["Flaky"]
assert t["Numbers/Param"]["Even/2"]["actual"] == "PASS", t.keys()
assert t["Typed/1"]["DefaultIsZero"]["actual"] == "PASS", t.keys()
assert "DISABLED_Off" not in t and "DISABLED_Skipped" not in t["Pass"]
assert r["num_failures_by_type"] == {"PASS": 9, "FAIL": 5, "TIMEOUT": 2}, r["num_failures_by_type"]
suite = ET.parse("all.xml").getroot()
assert suite.get("tests") == "12" and suite.get("failures") == "3", suite.attrib
PY

# The same with several tests per process: a crash or a hang reruns the
# rest of its batch alone; every test ends as it did alone, and each log
# holds its own test's output only.
rm -f "$FLAKY_COUNTER"
"$tool" -w 2 --batch_size=4 --timeout=2 --retry_failed=1 -d batch_logs \
  --dump_json_test_results=batch.json "$sample" >batch.txt 2>&1
expect_eq "batches: exit status" 1 $?
python3 - <<'PY' || fail "batches give other results: $(cat batch.json)"
import json
def actual(path):
    out = {}
    def walk(node, prefix):
        for k, v in node.items():
            if "actual" in v: out[prefix + k] = v["actual"]
            else: walk(v, prefix + k + ".")
    walk(json.load(open(path))["tests"], "")
    return out
assert actual("batch.json") == actual("all.json"), (actual("batch.json"), actual("all.json"))
PY
log=$(ls batch_logs/*Pass.One-1-1.log)
grep -q "output of Pass.One" "$log" || fail "batch log of Pass.One: $(cat "$log")"
grep -q "Pass.Two\|Fail.Expect" "$log" && fail "another test's output in Pass.One's log: $(cat "$log")"

# The default without --timeout: a few processes for many tests (one per
# worker), with every test's result as when each runs alone.
rm -f "$FLAKY_COUNTER"
no_hang='-Hang.*'
"$tool" -w 2 --batch_size=1 --gtest_filter="$no_hang" \
  --dump_json_test_results=alone.json "$sample" >alone.txt 2>&1
expect_eq "each alone: exit status" 1 $?
rm -f "$FLAKY_COUNTER" starts
SAMPLE_STARTS="$work/starts" "$tool" -w 2 --gtest_filter="$no_hang" \
  --dump_json_test_results=auto.json "$sample" >auto.txt 2>&1
expect_eq "auto batches: exit status" 1 $?
# The listing, two batches, and the lone reruns of Crash.Abort's batch
# mates that it kept from running (at most the 5 others of its batch).
starts=$(wc -l <starts)
((starts >= 3 && starts <= 8)) || fail "auto batches started $starts processes"
python3 - <<'PY' || fail "auto batches give other results: $(cat auto.json)"
import json
def actual(path):
    out = {}
    def walk(node, prefix):
        for k, v in node.items():
            if "actual" in v: out[prefix + k] = v["actual"]
            else: walk(v, prefix + k + ".")
    walk(json.load(open(path))["tests"], "")
    return out
assert len(actual("auto.json")) == 11, actual("auto.json")
assert actual("auto.json") == actual("alone.json"), (actual("auto.json"), actual("alone.json"))
PY
"$tool" --batch_size=0 "$sample" >/dev/null 2>err.txt
expect_eq "bad --batch_size" 255 $?
grep -q "^gtest_parallel: --batch_size wants a whole number >= 1 or 'auto', got '0'" err.txt ||
  fail "bad --batch_size message: $(cat err.txt)"

# --trace and --timeline: an event and a bar per test process.
"$tool" -w 2 --batch_size=1 --gtest_filter='Pass.*:Numbers/*' --trace=tests.json \
  --timeline=tests.html "$sample" >/dev/null 2>&1
expect_eq "--trace: exit status" 0 $?
python3 - <<'PY' || fail "--trace: $(cat tests.json)"
import json
events = json.load(open("tests.json"))["traceEvents"]
spans = [e for e in events if e["ph"] == "X"]
assert sorted(e["name"] for e in spans) == ["Numbers/Param.Even/0", "Numbers/Param.Even/1",
    "Numbers/Param.Even/2", "Pass.One", "Pass.Two"], spans
assert all(e["tid"] in (0, 1) and e["args"]["status"] == "succeeded" for e in spans), spans
PY
expect_eq "--timeline bars" 5 "$(grep -o '<rect class="bar ok"' tests.html | wc -l)"

# Passing tests only: exit 0; gtest's sharding variables never reach them.
GTEST_SHARD_INDEX=1 GTEST_TOTAL_SHARDS=3 GTEST_OUTPUT="xml:$work/gtest.xml" \
  "$tool" -w 2 --gtest_filter='Pass.*:Numbers/*:Typed/*:Env.*' "$sample" >pass.txt 2>&1
expect_eq "all passed: exit status" 0 $?
[[ -e gtest.xml ]] && fail "GTEST_OUTPUT reached a test"

# The saved times: every test that passed, for the next run's order.
grep -q "Pass.Two" cache/parallel/gtest-parallel-times || fail "times not saved"
grep -q "Fail.Expect" cache/parallel/gtest-parallel-times && fail "a failed test's time was saved"

# --repeat, --output_dir, disabled tests on request.
"$tool" -r 3 -d logs --gtest_also_run_disabled_tests \
  --gtest_filter='Pass.One:Pass.DISABLED_Skipped' "$sample" >/dev/null 2>&1
expect_eq "repeat exit" 0 $?
expect_eq "logs written" 6 "$(ls logs | wc -l)"
grep -l "disabled test ran" logs/* >/dev/null || fail "disabled test did not run on request"

# Sharding: two shards together run each test once.
for i in 0 1; do
  "$tool" --shard_count=2 --shard_index=$i --gtest_filter='Pass.*:Numbers/*' \
    --dump_json_test_results=shard$i.json "$sample" >/dev/null 2>&1
done
python3 - <<'PY' || fail "shards"
import json
def names(path):
    out = []
    def walk(node, prefix):
        for k, v in node.items():
            if "actual" in v: out.append(prefix + k)
            else: walk(v, prefix + k + ".")
    walk(json.load(open(path))["tests"], "")
    return out
a, b = names("shard0.json"), names("shard1.json")
assert a and b and not set(a) & set(b), (a, b)
assert sorted(a + b) == sorted(["Pass.One", "Pass.Two", "Numbers/Param.Even/0",
                                "Numbers/Param.Even/1", "Numbers/Param.Even/2"]), (a, b)
PY

# --serialize_test_cases: a suite runs as one process.
"$tool" --serialize_test_cases --gtest_filter='Numbers/*' \
  --dump_json_test_results=serial.json "$sample" >/dev/null 2>&1
python3 -c 'import json; t=json.load(open("serial.json"))["tests"]; assert list(t["Numbers/Param"]) == ["*"], t' ||
  fail "serialize_test_cases: $(cat serial.json)"

# A status line on a terminal.
python3 - "$tool" "$sample" <<'PY' || fail "status line on a terminal"
import os, pty, subprocess, sys
master, slave = pty.openpty()
proc = subprocess.Popen([sys.argv[1], "--gtest_filter=Pass.*", sys.argv[2]],
                        stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
os.close(slave)
out = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
assert proc.wait() == 0
assert b"[1/2] " in out and b"[2/2] " in out, out
PY

# Bad usage: one line, status 255.
"$tool" >/dev/null 2>err.txt
expect_eq "no binary" 255 $?
"$tool" -w 0 "$sample" >/dev/null 2>err.txt
expect_eq "bad -w" 255 $?
grep -q "^gtest_parallel: -w wants a whole number >= 1, got '0'" err.txt || fail "bad -w message: $(cat err.txt)"
"$tool" /etc/passwd >/dev/null 2>err.txt
expect_eq "not executable" 255 $?
"$tool" /bin/false >/dev/null 2>err.txt
expect_eq "cannot list" 255 $?
grep -q "cannot list the tests of '/bin/false'" err.txt || fail "list error: $(cat err.txt)"

end_checks
