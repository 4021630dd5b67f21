#!/bin/bash
# End-to-end tests of parallel_steps with the tools around it: GNU parallel's
# side (::: and :::: sources, replacement strings, --link, quoting,
# --dry-run, --joblog, --resume, --line-buffer, --results, --retries, --halt)
# and GNU make's jobserver. (The rest of the tool: parallel_steps_test.sh;
# row by row against GNU parallel itself: gnu_parallel_compare_test.sh.)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../testing/checks.sh"
probe="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/concurrency_probe.sh"

tool="$(pwd)/tools/parallel_steps"
work="${TEST_TMPDIR:-$(mktemp -d)}/gnu_work"
mkdir -p "$work"
cd "$work"

# GNU parallel's forms: ::: and :::: sources, replacement strings, stdin
# lines as arguments of a template, cross product and --link; arguments are
# quoted, never run as shell code.
out=$("$tool" echo {} {.} {/} {//} {/.} {#} ::: dir/a.tar.gz 'b c.txt')
expect_eq "::: with replacement strings" $'dir/a.tar.gz dir/a.tar a.tar.gz dir a.tar 1\nb c.txt b c b c.txt . b c 2' "$out"
out=$(printf 'x.c\ny.c\n' | "$tool" echo cc -c {} -o {.}.o)
expect_eq "stdin lines as arguments" $'cc -c x.c -o x.o\ncc -c y.c -o y.o' "$out"
printf '1\n2\n' >nums.txt
out=$("$tool" -j 1 echo {1}-{2} ::: a b :::: nums.txt)
expect_eq "cross product of ::: and ::::" $'a-1\na-2\nb-1\nb-2' "$out"
out=$("$tool" -j 2 'echo {#} {%} $PARALLEL_SEQ $PARALLEL_JOBSLOT' ::: a b c | sort)
python3 - "$out" <<'PY' || fail "{%} and PARALLEL_SEQ/PARALLEL_JOBSLOT: $out"
import sys
rows = [l.split() for l in sys.argv[1].splitlines()]
assert [r[0] for r in rows] == ["1", "2", "3"] and all(r[0] == r[2] for r in rows), rows
assert all(r[1] == r[3] and r[1] in ("1", "2") for r in rows), rows
PY
out=$("$tool" --link echo {1}{2} ::: a b c ::: 1 2)
expect_eq "--link" $'a1\nb2\nc1' "$out"
out=$("$tool" echo ::: 'x; touch pwned' '$(touch pwned2)')
expect_eq "appended and quoted" $'x; touch pwned\n$(touch pwned2)' "$out"
[[ -e pwned || -e pwned2 ]] && fail "an argument ran as shell code"
"$tool" echo {} :::: no-such-file >/dev/null 2>err.txt
expect_eq ":::: missing file: exit status" 255 $?
grep -q "^parallel_steps: :::: no-such-file: cannot read it" err.txt || fail ":::: error: $(cat err.txt)"
"$tool" echo {2} ::: a >/dev/null 2>err.txt
expect_eq "{2} of one source: exit status" 255 $?
"$tool" --link -- 'echo a' >/dev/null 2>err.txt
expect_eq "--link without sources: exit status" 255 $?

# --dry-run prints and runs nothing; --joblog in GNU parallel's format;
# --resume-failed runs again only what failed, --resume only what is new.
out=$("$tool" --dry-run -- 'touch ran' 'echo b')
expect_eq "--dry-run" $'touch ran\necho b' "$out"
[[ -e ran ]] && fail "--dry-run ran a command"
rm -f jobs.tsv
"$tool" --joblog=jobs.tsv -- 'echo a' 'exit 3' 'kill -9 $$' >/dev/null 2>&1
expect_eq "--joblog run: exit status" 2 $?
python3 - <<'PY' || fail "--joblog: $(cat jobs.tsv)"
import csv
rows = list(csv.reader(open("jobs.tsv"), delimiter="\t"))
assert rows[0] == ["Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive",
                   "Exitval", "Signal", "Command"], rows[0]
jobs = {int(r[0]): r for r in rows[1:]}
assert sorted(jobs) == [1, 2, 3], rows
assert jobs[1][1] == ":" and float(jobs[1][2]) > 1.7e9 and float(jobs[1][3]) >= 0
assert jobs[1][5:9] == ["2", "0", "0", "echo a"], jobs[1]
assert jobs[2][6:9] == ["3", "0", "exit 3"], jobs[2]
assert jobs[3][7] == "9", jobs[3]
PY
out=$("$tool" --joblog=jobs.tsv --resume-failed -- 'echo a' 'echo again 2' 'echo again 3')
expect_eq "--resume-failed" $'again 2\nagain 3' "$out"
out=$("$tool" --joblog=jobs.tsv --resume -- 'echo a' 'echo x' 'echo y' 'echo new')
expect_eq "--resume" "new" "$out"
expect_eq "--joblog appended when resuming" 7 "$(wc -l <jobs.tsv)"
"$tool" --resume -- true >/dev/null 2>err.txt
expect_eq "--resume without --joblog" 255 $?

# --line-buffer: every running command's whole lines as they come. B's line
# goes out while A (the first command) still runs, between A's two lines.
out=$("$tool" -j 2 --line-buffer -- 'echo A1; sleep 2; echo A2' 'sleep 1; echo B')
expect_eq "--line-buffer interleaves whole lines" $'A1\nB\nA2' "$out"
out=$("$tool" -j 2 --line-buffer --tag -- 'printf "a "; sleep 1; echo b' 'sleep 0.5; echo c')
expect_eq "--line-buffer never splits a line" $'sleep 0.5; echo c\tc\nprintf "a "; sleep 1; echo b\ta b' "$out"

# --results=DIR: each command's stdout, stderr and command line in DIR/SEQ;
# with --retries, the last attempt's. A directory that cannot be made is a
# usage error; a job whose files cannot be created fails naming them.
rm -rf res count
"$tool" --results=res/run --retries=1 -- 'echo out; echo err >&2' \
  'n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) >count; echo attempt $n' >/dev/null 2>&1
expect_eq "--results: exit status" 0 $?
expect_eq "--results stdout" "out" "$(cat res/run/1/stdout)"
expect_eq "--results stderr" "err" "$(cat res/run/1/stderr)"
expect_eq "--results cmd" "echo out; echo err >&2" "$(cat res/run/1/cmd)"
expect_eq "--results of a command that wrote nothing to stderr" "" "$(cat res/run/2/stderr)"
rm -f count
"$tool" --results=res/retry --retries=1 -- \
  'n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) >count; echo attempt $n; [ $n -ge 1 ]' >/dev/null 2>&1
expect_eq "--results after a retry: the last attempt" "attempt 1" "$(cat res/retry/1/stdout)"
touch res/file
"$tool" --results=res/file/sub -- true >/dev/null 2>err.txt
expect_eq "--results in a file: exit status" 255 $?
grep -q "^parallel_steps: --results=res/file/sub: cannot create" err.txt || fail "--results error: $(cat err.txt)"
mkdir -p res/clash && touch res/clash/2
out=$("$tool" --results=res/clash -- 'echo one' 'echo two' 'echo three' 2>err.txt)
expect_eq "--results, one job's files cannot be made: exit status" 1 $?
expect_eq "--results, the other jobs run" $'one\nthree' "$out"
grep -q "cannot create res/clash/2/stdout" err.txt || fail "--results clash: $(cat err.txt)"

# --retries: a failed command runs again; one that then passes is flaky in
# the summary, the JSON (attempts, flaky) and JUnit (flakyFailure, as Maven
# Surefire writes it); the job log has every attempt.
rm -f count retries.tsv
flaky='n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) >count; echo try $n; [ $n -ge 1 ]'
"$tool" --retries=2 --json=retries.json --junit=retries.xml --joblog=retries.tsv -- \
  "$flaky" 'exit 4' 'echo fine' >/dev/null 2>err.txt
expect_eq "--retries: exit status" 1 $?
grep -q "1 of 3 commands were flaky" err.txt || fail "no flaky summary: $(cat err.txt)"
python3 - "$flaky" <<'PY' || fail "--retries reports: $(cat retries.json retries.xml retries.tsv)"
import json, sys, xml.etree.ElementTree as ET
flaky = sys.argv[1]
got = {s["command"]: s for s in json.load(open("retries.json"))}
assert (got[flaky]["status"], got[flaky]["attempts"], got[flaky]["flaky"]) == ("passed", 2, True), got
assert (got["exit 4"]["status"], got["exit 4"]["attempts"], got["exit 4"]["flaky"]) == ("failed", 3, False), got
assert (got["echo fine"]["attempts"], got["echo fine"]["flaky"]) == (1, False), got
cases = {c.get("name"): c for c in ET.parse("retries.xml").getroot()}
f = cases[flaky].find("flakyFailure")
assert f is not None and "exited with code 1" in f.get("message"), ET.tostring(cases[flaky])
assert f.find("system-out").text == "try 0\n"
assert cases[flaky].find("failure") is None
assert cases["exit 4"].find("failure") is not None and cases["exit 4"].find("flakyFailure") is None
rows = [l.split("\t") for l in open("retries.tsv").read().splitlines()[1:]]
assert sorted(int(r[0]) for r in rows) == [1, 1, 2, 2, 2, 3], rows
PY
"$tool" --retries=-1 -- true >/dev/null 2>err.txt
expect_eq "--retries=-1" 255 $?

# --halt: soon lets the running commands finish, now kills them; fail=N,
# N%, success=N; never starts another.
out=$("$tool" -j 2 --halt=soon,fail=1 -- 'sleep 0.3; echo finished' 'exit 1' 'echo never' 2>/dev/null)
expect_eq "--halt=soon,fail=1" "finished" "$out"
out=$("$tool" -j 2 --halt=now,fail=1 -- 'sleep 0.3; echo finished' 'exit 1' 'echo never' 2>/dev/null)
expect_eq "--halt=now,fail=1" "" "$out"
out=$("$tool" -j 1 --halt=now,success=50% -- 'echo 1' 'echo 2' 'echo 3' 'echo 4' 2>/dev/null)
expect_eq "--halt=now,success=50%" $'1\n2' "$out"
"$tool" --halt=soon,fail=0 -- true >/dev/null 2>err.txt
expect_eq "--halt=soon,fail=0" 255 $?

# Under make -j3 the jobserver decides: never more than 3 commands at once,
# and every token goes back (make 4.3 complains otherwise).
cp "$probe" probe.sh
cat >Makefile <<MAKE
all:
	+@"$tool" -- $(printf "'sh probe.sh' %.0s" $(seq 1 9))
fails:
	+@"$tool" -- $(printf "'sh probe.sh; exit 1' %.0s" $(seq 1 6)); true
MAKE
rm -f counts
make -j3 all >/dev/null 2>make.txt
expect_eq "make -j3 exit" 0 $?
expect_eq "make -j3 max concurrency" 3 "$(sort -n counts | tail -1)"
grep -qi "jobserver\|INTERNAL" make.txt && fail "make complained: $(cat make.txt)"
rm -f counts
make -j2 fails >/dev/null 2>make.txt
expect_eq "make -j2 max concurrency with failures" 2 "$(sort -n counts | tail -1)"
grep -qi "jobserver\|INTERNAL" make.txt && fail "make complained after failures: $(cat make.txt)"
# Every token goes back on the tool's other ways out too: death by SIGPIPE
# (`| head -1`: the reader went away) and by SIGQUIT (sent by a command to
# its parent, the tool: a background job of a script would ignore it).
cat >Makefile.exits <<MAKE
pipe:
	+@"$tool" -- 'yes | head -c 3000000' 'sleep 0.3; echo b' 'sleep 0.3' 'sleep 0.3' | head -1 >/dev/null
quit:
	+@ulimit -c 0; "$tool" -- 'sleep 0.5; kill -QUIT \$\$PPID' 'sleep 5' 'sleep 5' 'sleep 5'; \\
	  echo "tool status \$\$?"
MAKE
make -j4 -f Makefile.exits pipe >/dev/null 2>make.txt
expect_eq "make -j4 with | head -1" 0 $?
grep -qi "jobserver\|INTERNAL" make.txt && fail "make lost tokens to SIGPIPE: $(cat make.txt)"
if [[ -z "${TSAN_OPTIONS:-}" ]]; then  # TSan defers the signal (see above)
  out=$(make -j4 -f Makefile.exits quit 2>make.txt)
  expect_eq "SIGQUIT ends the tool" "tool status 131" "$out"
  grep -qi "jobserver\|INTERNAL" make.txt && fail "make lost tokens to SIGQUIT: $(cat make.txt)"
fi
# Without '+' make does not pass the jobserver; the tool falls back to -j CPUs.
printf 'all:\n\t@"%s" -- "echo plain"\n' "$tool" >Makefile.plain
out=$(make -j3 -f Makefile.plain 2>&1)
expect_eq "make without +" "plain" "$out"

# make 4.4's named-pipe jobserver: two tokens in a fifo plus the implicit
# slot allow 3 at once, and both tokens are back in the fifo afterwards.
mkfifo jobserver.fifo
exec 7<>jobserver.fifo
printf '++' >&7
rm -f counts
cmds=()
for i in $(seq 1 6); do cmds+=("sh probe.sh"); done
MAKEFLAGS=" -j3 --jobserver-auth=fifo:$PWD/jobserver.fifo" \
  "$tool" -- "${cmds[@]}" >/dev/null 2>err.txt
expect_eq "fifo jobserver exit" 0 $?
expect_eq "fifo jobserver max concurrency" 3 "$(sort -n counts | tail -1)"
tokens=$(timeout 2 dd bs=1 count=2 <&7 2>/dev/null)
expect_eq "fifo jobserver tokens returned" "++" "$tokens"
exec 7>&-
# A malformed jobserver is reported and -j applies.
MAKEFLAGS="--jobserver-auth=oops" "$tool" -- true >/dev/null 2>err.txt
expect_eq "malformed jobserver still runs" 0 $?
grep -q "malformed jobserver" err.txt || fail "malformed jobserver message: $(cat err.txt)"

end_checks
