#!/bin/bash
# Runs real gtest binaries that fail by design (gtest_bridge_demo with the
# bridge, gtest_nobridge_demo without it) and checks what a developer and a
# CI see: the failure at the assertion's file:line, the step named, exit
# code 1; a passing selection exits 0; --gtest_repeat, --gtest_shuffle and
# --gtest_output=xml keep the failure.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

demo="$(pwd)/testing/gtest_bridge_demo"
nobridge="$(pwd)/testing/gtest_nobridge_demo"
source_file="testing/gtest_bridge_demo.cc"
work="${TEST_TMPDIR:-$(mktemp -d)}/bridge"
mkdir -p "$work"


line_of() {  # the line of the marker in the demo's source
  grep -n -- "$1" "$source_file" | head -1 | cut -d: -f1
}

# run TEST EXPECTED_EXIT: runs one test, output in $work/TEST.txt
run() {
  "$demo" --gtest_filter="Demo.$1" >"$work/$1.txt" 2>&1
  local status=$?
  [[ $status == "$2" ]] || fail "Demo.$1: exit $status, expected $2: $(tail -30 "$work/$1.txt")"
}

# expect_at TEST MARKER: gtest reported a failure at the marker's line,
# naming the step, and nothing else failed.
expect_at() {
  local out="$work/$1.txt" line
  line=$(line_of "$2")
  grep -q "^$source_file:$line: Failure" "$out" ||
    fail "Demo.$1: no failure at $source_file:$line: $(cat "$out")"
  grep -q "^\[in .* (pid [0-9]*)\]" "$out" || fail "Demo.$1: the step is not named: $(cat "$out")"
  local count
  count=$(grep -c ": Failure$" "$out")
  [[ $count == "${3:-1}" ]] || fail "Demo.$1: $count failures reported, expected ${3:-1}: $(cat "$out")"
}

run ExpectInAStep 1
expect_at ExpectInAStep marker-expect
grep -q "second step ran" "$work/ExpectInAStep.txt" || fail "the other step's output is missing"
grep -q "^\[in step 0 (pid [0-9]*)\]" "$work/ExpectInAStep.txt" || fail "step 0 not named"

run AssertEndsItsFunction 1
expect_at AssertEndsItsFunction marker-assert
grep -q "not reached" "$work/AssertEndsItsFunction.txt" && fail "ASSERT did not end the step's function"

run NonfatalLetsTheStepRunOn 1
expect_at NonfatalLetsTheStepRunOn marker-add-failure
grep -q "after ADD_FAILURE" "$work/NonfatalLetsTheStepRunOn.txt" || fail "a nonfatal failure stopped the step"

run ExpectThenThrow 1
expect_at ExpectThenThrow marker-then-throw
run ExpectThenCrash 1
expect_at ExpectThenCrash marker-then-crash

run NestedSteps 1
expect_at NestedSteps marker-nested
grep -q "^\[in step 1 (pid [0-9]*)\]" "$work/NestedSteps.txt" && grep -q "^\[in step 0 (pid [0-9]*)\]" "$work/NestedSteps.txt" ||
  fail "nested steps not both named: $(cat "$work/NestedSteps.txt")"

run TaskRunnerInput 1
expect_at TaskRunnerInput marker-task-runner
grep -q "^\[in input 1 (1) (pid [0-9]*)\]" "$work/TaskRunnerInput.txt" || fail "input not named"

run ProcessPoolTask 1
expect_at ProcessPoolTask marker-pool

run ExecutorTask 1
expect_at ExecutorTask marker-executor
grep -q "^\[in task 0 (1) (pid [0-9]*)\]" "$work/ExecutorTask.txt" || fail "executor task not named"

run MockExpectationInAStep 1
expect_at MockExpectationInAStep marker-mock 2  # the unexpected call, the unmet expectation

run HaltOnError 1
expect_at HaltOnError marker-halt

run InProcessFake 1
line=$(line_of marker-in-process)
grep -q "^$source_file:$line: Failure" "$work/InProcessFake.txt" || fail "in-process failure not at its line: $(cat "$work/InProcessFake.txt")"

run PassingSteps 0
grep -q "passing step" "$work/PassingSteps.txt" || fail "passing step output missing"

# --gtest_repeat and --gtest_shuffle: the failure each time; the XML has it.
"$demo" --gtest_filter='Demo.ExpectInAStep:Demo.PassingSteps' --gtest_repeat=2 \
  --gtest_shuffle --gtest_output="xml:$work/out.xml" >"$work/repeat.txt" 2>&1
[[ $? == 1 ]] || fail "repeat: exit code"
count=$(grep -c "^$source_file:$(line_of marker-expect): Failure" "$work/repeat.txt")
[[ $count == 2 ]] || fail "repeat: $count failures at the line, expected 2"
python3 - "$work/out.xml" "$source_file:$(line_of marker-expect)" <<'PY' || fail "XML report: $(cat "$work/out.xml")"
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = {c.get("name"): c for c in root.iter("testcase")}
failures = cases["ExpectInAStep"].findall("failure")
assert failures, "no <failure> for ExpectInAStep"
assert any(sys.argv[2] in f.get("message") and "marker-expect" in f.get("message")
           for f in failures), [f.get("message") for f in failures]
assert not cases["PassingSteps"].findall("failure")
PY

# Without the bridge: never a silent pass.
"$nobridge" --gtest_filter='NoBridge.ExpectInAStepStillFailsTheTest' >"$work/nobridge.txt" 2>&1
[[ $? == 1 ]] || fail "no bridge: the test passed: $(cat "$work/nobridge.txt")"
grep -q "link //testing:gtest_bridge" "$work/nobridge.txt" || fail "no bridge: no hint: $(cat "$work/nobridge.txt")"
"$nobridge" --gtest_filter='NoBridge.PassingStepsPass' >"$work/nobridge_pass.txt" 2>&1 ||
  fail "no bridge: a passing test failed: $(cat "$work/nobridge_pass.txt")"

end_checks
