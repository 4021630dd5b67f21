#!/bin/bash
# End-to-end tests of the parallel_steps tool: real commands, exact output,
# exit codes, reports parsed by real parsers, interrupts.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../testing/checks.sh"
probe="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/concurrency_probe.sh"

tool="$(pwd)/tools/parallel_steps"
work="${TEST_TMPDIR:-$(mktemp -d)}/work"
mkdir -p "$work"
cd "$work"

# Output is grouped and in order even when later commands finish first.
out=$("$tool" -j 3 -- 'sleep 0.3; echo one' 'sleep 0.1; echo two' 'echo three')
expect_eq "order" $'one\ntwo\nthree' "$out"

# stdout goes to stdout, stderr to stderr.
"$tool" -- 'echo out; echo err >&2' >stdout.txt 2>stderr.txt
expect_eq "stdout" "out" "$(cat stdout.txt)"
expect_eq "stderr" "err" "$(cat stderr.txt)"

# Exit code: the number of failed commands.
"$tool" -- true false 'exit 3' 'kill -9 $$' >/dev/null 2>&1
expect_eq "exit code counts failures" 3 $?

# ...capped at 101.
cmds=()
for i in $(seq 1 105); do cmds+=(false); done
"$tool" -j 4 -- "${cmds[@]}" >/dev/null 2>&1
expect_eq "exit code cap" 101 $?

# The failure summary names the command, how it ended and its last lines.
"$tool" -- 'echo last words; exit 4' >/dev/null 2>summary.txt
grep -q "FAILED echo last words; exit 4  (exit code 4" summary.txt || fail "summary: $(cat summary.txt)"
grep -q "| last words" summary.txt || fail "summary tail: $(cat summary.txt)"

# Bad usage: 255 and one line naming the problem.
for args in "--no-such-flag" "--jobs=-3" "-j x" "--timeout=soon" "--jobs"; do
  # shellcheck disable=SC2086
  "$tool" $args -- true >/dev/null 2>err.txt
  code=$?
  expect_eq "usage error code for $args" 255 "$code"
  expect_eq "usage error is one line for $args" 1 "$(wc -l <err.txt)"
done
grep -q "unknown flag '--no-such-flag'" <("$tool" --no-such-flag 2>&1) || fail "unknown flag message"

# A bad temp dir is a one-line error before anything runs.
"$tool" --temp-dir=/no/such/dir -- 'touch ran' >/dev/null 2>err.txt
expect_eq "bad temp dir code" 255 $?
grep -q "'/no/such/dir'" err.txt || fail "temp dir message: $(cat err.txt)"
[[ ! -e ran ]] || fail "a command ran despite the bad temp dir"

# Commands from stdin, skipping blank lines and comments.
out=$(printf 'echo a\n\n# a comment\n  echo b  \n' | "$tool")
expect_eq "stdin mode" $'a\nb' "$out"

# Closed stdin with no commands is a usage error.
"$tool" <&- >/dev/null 2>err.txt
expect_eq "closed stdin" 255 $?

# --halt-on-error: the sleeper is killed, the rest never start.
start=$SECONDS
"$tool" -j 2 --halt-on-error -- 'sleep 60' 'exit 1' 'touch should_not_exist' >/dev/null 2>&1
expect_eq "halt exit code" 1 $?
[[ ! -e should_not_exist ]] || fail "halt started a later command"
((SECONDS - start < 30)) || fail "halt took $((SECONDS - start))s"

# --timeout and --silent-timeout.
"$tool" --timeout=200ms -- 'sleep 60' 'echo fine' >out.txt 2>err.txt
expect_eq "timeout exit code" 1 $?
grep -q "timed out" err.txt || fail "timeout summary: $(cat err.txt)"
"$tool" --silent-timeout=200ms -- 'echo hi; sleep 60' >/dev/null 2>err.txt
expect_eq "silent timeout exit code" 1 $?
grep -q "silent too long" err.txt || fail "silent timeout summary: $(cat err.txt)"

# -j is honoured: count the most commands ever running at once.
cp "$probe" probe.sh
cmds=()
for i in $(seq 1 8); do cmds+=("sh probe.sh"); done
rm -f counts
"$tool" -j 2 -- "${cmds[@]}" >/dev/null 2>&1
expect_eq "-j 2 max concurrency" 2 "$(sort -n counts | tail -1)"

# Reports, checked by real parsers.
"$tool" --json=report.json --junit=report.xml -- 'echo ok' 'echo bad; exit 2' >/dev/null 2>&1
python3 - <<'PY' || fail "reports did not parse or were wrong"
import json, xml.etree.ElementTree as ET
steps = json.load(open("report.json"))
assert [s["command"] for s in steps] == ["echo ok", "echo bad; exit 2"], steps
assert steps[0]["status"] == "passed" and steps[0]["exit_code"] == 0, steps[0]
assert steps[1]["status"] == "failed" and steps[1]["exit_code"] == 2, steps[1]
assert steps[0]["output_bytes"] == 3 and steps[0]["signal"] is None
assert isinstance(steps[1]["duration_ms"], int)
suite = ET.parse("report.xml").getroot()
assert suite.tag == "testsuite" and suite.get("tests") == "2" and suite.get("failures") == "1"
cases = suite.findall("testcase")
assert cases[0].find("failure") is None
failure = cases[1].find("failure")
assert "exited with code 2" in failure.get("message"), failure.get("message")
assert "bad" in failure.text
float(cases[1].get("time"))
PY
ls report.json.tmp.* report.xml.tmp.* >/dev/null 2>&1 && fail "report temp files left behind"

# SIGINT mid-run: output so far is replayed, no command survives, and the tool
# dies of SIGINT. Skipped under ThreadSanitizer, whose runtime defers
# asynchronous signal handlers and here never runs them during ppoll (the
# library's own interrupt tests do run under it).
if [[ "${TSAN_OPTIONS:-}" != "" ]]; then
  echo "note: SIGINT/SIGTERM checks skipped under ThreadSanitizer" >&2
else
rm -f pids
# A background job of a script has SIGINT ignored, and the tool leaves an
# ignored signal ignored: give it SIGINT's default first, as a foreground
# job has.
python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' \
  "$tool" -- 'echo started; echo $$ >>pids; sleep 60' 'echo $$ >>pids; sleep 60' >int.txt 2>&1 &
tool_pid=$!
for _ in $(seq 1 100); do
  [[ -s pids && $(wc -l <pids) -ge 2 ]] && break
  sleep 0.05
done
kill -INT "$tool_pid"
wait "$tool_pid"
expect_eq "SIGINT exit status" 130 $?
grep -q started int.txt || fail "output before SIGINT was not replayed"
while read -r pid; do
  kill -0 "$pid" 2>/dev/null && fail "command $pid survived SIGINT"
done <pids

# SIGTERM likewise ends as 143.
"$tool" -- 'sleep 60' >/dev/null 2>&1 &
tool_pid=$!
sleep 0.2
kill -TERM "$tool_pid"
wait "$tool_pid"
expect_eq "SIGTERM exit status" 143 $?

# A signal ignored when the tool starts (nohup, a background job's SIGINT)
# stays ignored, for the tool and for its commands, as make and sh leave it.
(trap '' HUP; exec "$tool" -- 'sleep 0.6; kill -HUP $$; echo survived') >hup.txt 2>&1 &
tool_pid=$!
sleep 0.2
kill -HUP "$tool_pid"
wait "$tool_pid"
expect_eq "SIGHUP ignored at the start: exit status" 0 $?
grep -q survived hup.txt || fail "a command did not inherit SIGHUP ignored: $(cat hup.txt)"

# A signal whose default action ends the tool (SIGUSR1 here) kills the
# commands' process groups first, then ends the tool as that signal would.
"$tool" -- 'sleep 9.3125 & wait' >/dev/null 2>&1 &
tool_pid=$!
for _ in $(seq 1 100); do pgrep -f "sleep 9.3125" >/dev/null && break; sleep 0.05; done
kill -USR1 "$tool_pid"
wait "$tool_pid"
expect_eq "SIGUSR1 exit status" 138 $?
for _ in $(seq 1 100); do pgrep -f "sleep 9.3125" >/dev/null || break; sleep 0.05; done
pgrep -f "sleep 9.3125" >/dev/null && fail "SIGUSR1 left a command's group running"
pkill -f "sleep 9.3125" 2>/dev/null
fi

# A script without "#!" runs through /bin/sh, as execvp, sh and make run it.
printf 'echo from a script without a shebang\n' >noshebang.sh
chmod 755 noshebang.sh
out=$("$tool" -- ./noshebang.sh 2>&1)
expect_eq "script without #!" "from a script without a shebang" "$out"

# A failed command's stderr is in the summary and the JUnit report (where
# ls, compilers and test runners write their errors).
"$tool" --junit=ls.xml -- 'ls /nonexistent-dir-of-the-test' >/dev/null 2>err.txt
grep -q "    | ls: cannot access '/nonexistent-dir-of-the-test'" err.txt ||
  fail "stderr not in the summary: $(cat err.txt)"
grep -q "cannot access" ls.xml || fail "stderr not in the JUnit failure: $(cat ls.xml)"

# TERM=dumb: a status line without escape codes; a long command is cut on a
# UTF-8 character boundary.
long_utf8="echo $(printf 'é%.0s' $(seq 1 40))"
TERM=dumb "$tool" --progress -- "sleep 0.2; $long_utf8" 'true' >/dev/null 2>dumb.txt
grep -q $'\x1b' dumb.txt && fail "escape codes with TERM=dumb: $(od -c dumb.txt | head)"
grep -q "1 running: sleep 0.2; echo é" dumb.txt || fail "TERM=dumb status line: $(cat dumb.txt)"
python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' dumb.txt ||
  fail "the status line split a UTF-8 character: $(od -c dumb.txt | head)"

# --trace: Chrome trace-event JSON, checked field by field; --timeline: one
# HTML file with a bar per command (failed ones red), rendered by headless
# Chromium to a PNG; --progress ends with a one-line account of the time.
"$tool" --progress --trace=run.json --timeline=run.html -j 2 -- \
  'sleep 0.3' 'sleep 0.1; exit 3' 'echo hi' 'sleep 0.2' >/dev/null 2>trace_err.txt
expect_eq "--trace run: exit status" 1 $?
grep -q "4 steps in [0-9.]* s, parallelism [0-9.]* of 2, longest: sleep 0.3 0.3 s$" trace_err.txt ||
  fail "no time summary line: $(cat trace_err.txt)"
python3 - <<'PY' || fail "--trace JSON: $(cat run.json)"
import json
trace = json.load(open("run.json"))
assert trace["displayTimeUnit"] == "ms"
events = trace["traceEvents"]
for e in events:
    assert e["ph"] in ("X", "M", "C"), e
    assert isinstance(e["pid"], int) and isinstance(e["name"], str), e
spans = [e for e in events if e["ph"] == "X"]
assert sorted(e["name"] for e in spans) == sorted(
    ["sleep 0.3", "sleep 0.1; exit 3", "echo hi", "sleep 0.2"]), spans
for e in spans:
    assert e["cat"] == "unit" and e["tid"] in (0, 1), e
    assert isinstance(e["ts"], int) and e["ts"] >= 0, e
    assert isinstance(e["dur"], int) and e["dur"] >= 0, e
    a = e["args"]
    assert set(a) >= {"status", "exit_code", "signal", "output_bytes", "pid"}, a
    assert a["pid"] > 0, a
by = {e["name"]: e for e in spans}
assert by["sleep 0.3"]["dur"] >= 300000, by["sleep 0.3"]
assert by["echo hi"]["args"]["output_bytes"] == 3, by["echo hi"]
failed = by["sleep 0.1; exit 3"]["args"]
assert failed["status"] == "failed" and failed["exit_code"] == 3, failed
assert failed["failure_type"] == "parallel::ProcessUnexpectedExit", failed
assert "exited with code 3" in failed["message"], failed
# No two commands on one lane at once.
for tid in (0, 1):
    lane = sorted((e["ts"], e["ts"] + e["dur"]) for e in spans if e["tid"] == tid)
    assert all(a[1] <= b[0] + 1000 for a, b in zip(lane, lane[1:])), lane
names = {e["tid"]: e["args"]["name"] for e in events
         if e["ph"] == "M" and e["name"] == "thread_name"}
assert names == {0: "slot 0", 1: "slot 1"}, names
counters = [e for e in events if e["ph"] == "C"]
assert counters and all(e["name"] == "parallelism" for e in counters), counters
assert [e["ts"] for e in counters] == sorted(e["ts"] for e in counters)
assert max(e["args"]["running"] for e in counters) == 2, counters
assert counters[0]["args"]["queued"] == 4 and counters[-1]["args"] == {"running": 0, "queued": 0}, counters
PY
bars=$(grep -o '<rect class="bar [a-z]*"' run.html | wc -l)
expect_eq "--timeline: a bar per command" 4 "$bars"
expect_eq "--timeline: the failed one red" 1 "$(grep -o '<rect class="bar failed"' run.html | wc -l)"
grep -q "parallelism 1\.[0-9]* of 2" run.html || fail "--timeline header: $(grep summary run.html)"
grep -qi "<script\|https\?://[a-z]" <(sed 's|http://www.w3.org/2000/svg||' run.html) &&
  fail "--timeline is not self-contained"
if ! command -v chromium >/dev/null; then
  fail "chromium is not installed (tools/setup.sh installs it)"
else
  mkdir -p home
  HOME="$work/home" timeout 60 chromium --headless --no-sandbox --disable-gpu \
    --disable-dev-shm-usage --hide-scrollbars --window-size=1100,300 \
    --screenshot="$work/run.png" "file://$work/run.html" >chromium.txt 2>&1
  python3 - <<'PY' || fail "the timeline did not render: $(tail -5 chromium.txt)"
png = open("run.png", "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000, len(png)
PY
fi

# Commands without shell syntax are executed directly (no /bin/sh).
out=$("$tool" -- 'ps -o comm= -p $$' 'cat /proc/self/comm')
expect_eq "direct exec vs shell" $'sh\ncat' "$out"

# --tag prefixes every line with its command.
out=$("$tool" --tag -- 'echo a; echo b' 'printf c')
expect_eq "--tag" $'echo a; echo b\ta\necho a; echo b\tb\nprintf c\tc' "$out"

# No status line when stderr is not a terminal...
"$tool" -- 'echo x' 'echo y >&2' >/dev/null 2>err.txt
expect_eq "no status line in a pipe" "y" "$(cat err.txt)"
# ...unless asked for; and on a pseudo-terminal by default.
"$tool" --progress -- 'sleep 0.1' 'true' >/dev/null 2>err.txt
grep -q "\[0/2\] 1 running: sleep 0.1" err.txt || fail "--progress: $(od -c err.txt | head)"
# A command that stops itself is named as stopped on the status line, and the
# silent timeout that ends it says so.
"$tool" --progress --silent-timeout=2500ms -- 'kill -STOP $$' 'sleep 0.1' \
  >/dev/null 2>err.txt
expect_eq "stopped command fails" 1 $?
grep -q "1 running, 1 stopped: kill -STOP" err.txt ||
  fail "stopped on the status line: $(od -c err.txt | head -20)"
grep -q "FAILED kill -STOP \$\$  (silent too long (it was stopped by SIGSTOP)" err.txt ||
  fail "stopped in the summary: $(cat -v err.txt)"

# The summary cuts a huge command line (the reports keep it whole) and
# says 0ms, not 0, for a command that took no time.
long="exit 4 # $(printf 'é%.0s' $(seq 1 3000))"
"$tool" --json=long.json -- "$long" >/dev/null 2>err.txt
expect_eq "huge command fails" 1 $?
line=$(grep "FAILED exit 4" err.txt)
(( ${#line} < 300 )) || fail "summary line not cut: ${#line} chars"
[[ "$line" == *"... (6009 bytes)  (exit code 4, "*"ms)" ]] || fail "cut summary line: $line"
python3 -c 'import json,sys; s=json.load(open("long.json"))[0]; sys.exit(len(s["command"].encode()) != 6009)' ||
  fail "JSON keeps the whole command"
"$tool" -- 'exit 5' >/dev/null 2>err.txt
grep -q "FAILED exit 5  (exit code 5, [0-9]*ms)" err.txt || fail "summary duration: $(cat err.txt)"

python3 - "$tool" <<'PY' || fail "status line on a pseudo-terminal"
import os, pty, subprocess, sys
master, slave = pty.openpty()
proc = subprocess.Popen([sys.argv[1], "--", "sleep 0.2; echo one", "echo two"],
                        stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                        env=dict(os.environ, TERM="xterm"))
os.close(slave)
out = proc.stdout.read()
proc.wait()
err = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    err += chunk
assert out == b"one\ntwo\n", out
assert b"[0/2] 2 running: echo two" in err, err
assert b"[2/2] 0 running" in err, err
# Erased at the end, then one line on where the time went.
import re
assert re.search(rb"\r\x1b\[K2 steps in [0-9.]+ s, parallelism [0-9.]+ of [0-9]+, "
                 rb"longest: sleep 0.2; echo one 0.2 s\r\n$", err), err
PY

# --help lists the flags; --version answers; --no-progress wins over a TTY.
"$tool" --help >help.txt
expect_eq "--help exit" 0 $?
# Flag nits: a flag is not a value, an empty value is refused, and a
# directory is not a list of commands.
"$tool" --json -- true >/dev/null 2>err.txt
expect_eq "--json --: exit status" 255 $?
[[ -e -- ]] && fail "a report named '--' was written"
grep -q "^parallel_steps: --json needs a value, got the flag '--'" err.txt || fail "--json --: $(cat err.txt)"
"$tool" --json= -- true >/dev/null 2>err.txt
expect_eq "--json=: exit status" 255 $?
grep -q "^parallel_steps: --json= needs a value after '='" err.txt || fail "--json=: $(cat err.txt)"
"$tool" <. >/dev/null 2>err.txt
expect_eq "a directory as stdin: exit status" 255 $?
grep -q "^parallel_steps: stdin is a directory" err.txt || fail "directory as stdin: $(cat err.txt)"

for flag in --jobs --halt-on-error --timeout --silent-timeout --json --junit --tag --link --halt --dry-run --retries --joblog --resume --resume-failed --tty --progress --temp-dir --trace --timeline; do
  grep -q -- "$flag" help.txt || fail "--help does not list $flag"
done
grep -q "^parallel_steps [0-9]" <("$tool" --version) || fail "--version"

# --tty: on a terminal of its own (the tool leads a session on a new pty),
# each command in turn reads the terminal as its stdin, in the foreground;
# without --tty a command that reads /dev/tty stops (SIGTTIN) and is shown
# as stopped, not hung in silence. No terminal: a one-line error.
python3 - "$tool" <<'PY' || fail "--tty on a pseudo-terminal"
import os, pty, select, sys, time

def run(args, typed, seconds=20):
    pid, master = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "dumb"
        os.execv(args[0], args)
    out, deadline, sent = b"", time.time() + seconds, False
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not sent and time.time() > deadline - seconds + 0.5:
            os.write(master, typed)  # once the commands wait for it
            sent = True
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's last user is gone
                chunk = b""
            if not chunk:
                return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out
            out += chunk
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            try:
                while True:
                    chunk = os.read(master, 4096)
                    if not chunk:
                        break
                    out += chunk
            except OSError:
                pass
            return os.waitstatus_to_exitcode(status), out
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None, out

tool = sys.argv[1]
code, out = run([tool, "--tty", "--", "read -r a; echo first got $a",
                 "read -r b </dev/tty; echo second got $b"], b"one\ntwo\n")
assert code == 0, (code, out)
assert b"first got one" in out and b"second got two" in out, out
code, out = run([tool, "--progress", "--timeout=3s", "--",
                 "read -r a </dev/tty; echo got $a"], b"", seconds=15)
assert code == 1, (code, out)
assert b"1 stopped" in out, out
PY
"$tool" --tty -- true </dev/null >/dev/null 2>err.txt
if [[ $? == 255 ]]; then
  grep -q "^parallel_steps: --tty: cannot open the terminal /dev/tty" err.txt ||
    fail "--tty without a terminal: $(cat err.txt)"
fi
"$tool" --tty -j 2 -- true >/dev/null 2>err.txt
expect_eq "--tty -j 2: exit status" 255 $?
python3 - "$tool" <<'PY' || fail "--no-progress on a pseudo-terminal"
import os, pty, subprocess, sys
master, slave = pty.openpty()
proc = subprocess.run([sys.argv[1], "--no-progress", "--", "echo one"],
                      stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
os.close(slave)
os.set_blocking(master, False)
try:
    err = os.read(master, 4096)
except (BlockingIOError, OSError):
    err = b""
assert proc.stdout == b"one\n", proc.stdout
assert b"running" not in err, err
PY

# `echo x >/dev/stderr` (a reopen with O_TRUNC) keeps both streams whole.
"$tool" -- 'echo line1; echo line2; echo warning >/dev/stderr; echo line3' >o.txt 2>e.txt
expect_eq "stderr idiom stdout" $'line1\nline2\nline3' "$(cat o.txt)"
expect_eq "stderr idiom stderr" "warning" "$(cat e.txt)"

# Shell builtins run under the shell, not as programs that "could not start".
"$tool" -- 'exit 3' >/dev/null 2>err.txt
expect_eq "builtin exit code" 1 $?
grep -q "could not start" err.txt && fail "builtin did not start: $(cat err.txt)"
"$tool" -- 'cd /tmp' ': 1' >/dev/null 2>&1
expect_eq "builtins pass" 0 $?

# A caller that ignores SIGCHLD (inherited through exec) still gets the truth.
python3 -c '
import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.argv[1], [sys.argv[1], "--", "false", "exit 7", "kill -9 $$", "true"])
' "$tool" >/dev/null 2>&1
expect_eq "SIGCHLD ignored by the caller" 3 $?

# The reader goes away: the tool dies of SIGPIPE at once (141) and nothing
# it started is left running.
marker="late-$$-$RANDOM"
"$tool" -j 2 -- 'yes | head -c 100000000' "sleep 7.5; echo $marker" | head -c 10 >/dev/null
expect_eq "reader gone: exit status" 141 "${PIPESTATUS[0]}"
pgrep -f "echo $marker" >/dev/null && fail "a step outlived the broken pipe"
# ...and with SIGPIPE ignored, it stops too, says so and exits 141.
(trap '' PIPE; "$tool" -j 2 -- 'yes | head -c 100000000' "sleep 7.5; echo $marker" 2>err.txt | head -c 10 >/dev/null
 exit "${PIPESTATUS[0]}")
expect_eq "reader gone, SIGPIPE ignored: exit status" 141 $?
grep -q "could not write the replayed stdout: Broken pipe" err.txt || fail "EPIPE message: $(cat err.txt)"
pgrep -f "echo $marker" >/dev/null && fail "a step outlived the broken pipe (SIGPIPE ignored)"

# stdout that cannot be written (a full disk, a read-only descriptor): the
# other stream is still replayed whole, the error is named in one line, and
# the exit status is not 0.
"$tool" -- 'echo out; echo err >&2' 'echo out2; echo err2 >&2' >/dev/full 2>err.txt
expect_eq "stdout on a full disk: exit status" 1 $?
expect_eq "stdout on a full disk: stderr" $'err\nerr2\nparallel_steps: could not write the replayed stdout: No space left on device' "$(cat err.txt)"
"$tool" -- 'echo out' 'echo e >&2' 1</dev/null 2>err.txt
expect_eq "read-only stdout: exit status" 1 $?
expect_eq "read-only stdout: stderr" $'e\nparallel_steps: could not write the replayed stdout: Bad file descriptor' "$(cat err.txt)"

# Behind a reader that never reads, the tool still acts on SIGTERM: its
# writes never block, and output the reader has not taken for 1 s after the
# interrupt is given up (this spun forever, at 100% CPU, before).
if [[ -z "${TSAN_OPTIONS:-}" ]]; then  # TSan defers the signal (see above)
  mkfifo stalled.fifo
  exec 8<>stalled.fifo  # the only reader, and it never reads
  "$tool" -- 'head -c 5000000 /dev/zero' 'sleep 5' >stalled.fifo 2>/dev/null &
  stalled=$!
  sleep 0.5
  kill -TERM "$stalled"
  for _ in $(seq 1 150); do kill -0 "$stalled" 2>/dev/null || break; sleep 0.02; done
  kill -0 "$stalled" 2>/dev/null && fail "SIGTERM not acted on behind a stalled reader"
  wait "$stalled"
  expect_eq "SIGTERM behind a stalled reader" 143 $?
  exec 8>&-
fi

# The tool is SIGKILLed: the commands' own children (the sleeps, children of
# each command's shell) die with it too. Unusual durations name them.
"$tool" -j 2 -- "sleep 9.2513; echo a" "sleep 9.5117; echo b" >/dev/null 2>&1 &
killed=$!
for _ in $(seq 1 200); do
  pgrep -f "sleep 9.2513" >/dev/null && pgrep -f "sleep 9.5117" >/dev/null && break
  sleep 0.02
done
kill -KILL "$killed"
wait "$killed" 2>/dev/null
# The watchdog acts within milliseconds; 3 s because once, under ASan with
# the whole suite loading both cores, a sleep was still there at 1 s (as in
# robustness_test).
for _ in $(seq 1 150); do
  pgrep -f "sleep 9.(2513|5117)" >/dev/null || break
  sleep 0.02
done
if pgrep -f "sleep 9.(2513|5117)" >/dev/null; then
  # Which processes, in which state, so that a failure explains itself.
  fail "commands' children outlived the SIGKILLed tool: $(ps -o pid=,ppid=,pgid=,sid=,stat=,args= -p "$(pgrep -d, -f "sleep 9.(2513|5117)")" | tr '\n' ';')"
fi
pkill -f "sleep 9.(2513|5117)" 2>/dev/null

# make's spelling of -j; a NUL in a command from stdin is refused.
out=$("$tool" -j1 -- 'echo a' 'echo b')
expect_eq "-j1" $'a\nb' "$out"
printf 'echo X\0; touch nul-ran\necho Y\n' | "$tool" >/dev/null 2>err.txt
expect_eq "NUL in stdin: usage error" 255 $?
grep -q "line 1 of stdin has a NUL byte" err.txt || fail "NUL message: $(cat err.txt)"
[[ -e nul-ran ]] && fail "a command with a NUL byte ran"

# A report path that cannot be written is refused before anything runs.
"$tool" --json=/no/such/dir/r.json -- 'touch report-ran' >/dev/null 2>err.txt
expect_eq "unwritable --json" 255 $?
[[ -e report-ran ]] && fail "ran although --json cannot be written"

# 30 failures: 20 in the summary, then a count of the rest.
cmds=()
for i in $(seq 1 30); do cmds+=("exit $((i % 5 + 1))"); done
"$tool" -j 4 -- "${cmds[@]}" >/dev/null 2>summary.txt
expect_eq "summary lists 20" 20 "$(grep -c '  FAILED ' summary.txt)"
grep -q "and 10 more" summary.txt || fail "summary count: $(tail -2 summary.txt)"

# Output through a pipe is never overwritten by a later command's (a spill
# file reused while its pages still sat in the pipe printed "b b" ~1 in 20).
bad=0
for _ in $(seq 1 60); do
  out=$(printf 'echo a\necho b\necho c\n' | "$tool" | cat)
  [[ "$out" == $'a\nb\nc' ]] || bad=$((bad + 1))
done
expect_eq "output through a pipe, 60 runs" 0 "$bad"

# A failing command's output tail is cut on a UTF-8 character boundary, so
# the JUnit report stays valid XML (the tail is the last 4 KiB).
"$tool" --junit=utf8.xml -- "printf 'x'; printf 'é%.0s' \$(seq 3000); exit 1" >/dev/null 2>&1
python3 - <<'PY' || fail "UTF-8 tail in JUnit: $(head -c 300 utf8.xml)"
import xml.etree.ElementTree as ET
tail = ET.parse("utf8.xml").getroot()[0][0].text
assert tail == "é" * 2048, (len(tail), tail[:5])
PY

# A program that cannot run reads as a shell says it, with a shell's code.
mkdir -p adir
"$tool" --json=start.json -- nonexistent_zz ./adir >/dev/null 2>err.txt
expect_eq "start failures count" 2 $?
grep -q "exit code 127: nonexistent_zz: command not found" err.txt || fail "127 summary: $(cat err.txt)"
grep -q "exit code 126: ./adir: Is a directory" err.txt || fail "126 summary: $(cat err.txt)"
python3 - <<'PY' || fail "start failures in JSON: $(cat start.json)"
import json
steps = json.load(open("start.json"))
assert steps[0]["exit_code"] == 127, steps
assert steps[0]["error"].endswith("nonexistent_zz: command not found"), steps
assert steps[1]["exit_code"] == 126, steps
PY

# --temp-dir on a 2 MiB tmpfs (root, in a private mount namespace): the space
# a run needs is the output not yet replayed; a command whose output cannot
# be kept fails naming the reason, and the others' output is whole.
if [[ $(id -u) == 0 ]]; then
  mkdir -p small
  small_run() {  # flags and commands; stdout to out.txt, prints "rc=N"
    unshare -m --propagation private bash -c \
      'mount -t tmpfs -o size=2m tmpfs small || exit 99
       "$@" >out.txt; echo "rc=$?"' -- "$tool" --temp-dir=small "$@"
  }
  out=$(small_run -j 1 -- 'head -c 1572864 /dev/zero' 'head -c 1572864 /dev/zero' \
          'head -c 10000000 /dev/zero' 'echo small >&2' 'echo third-ok' 2>err.txt)
  expect_eq "2 MiB temp dir, one at a time" "rc=0" "$out"
  expect_eq "2 MiB temp dir, stdout" "13145737 third-ok" "$(wc -c <out.txt) $(tail -c 9 out.txt)"
  expect_eq "2 MiB temp dir, stderr" "small" "$(cat err.txt)"
  out=$(small_run -j 2 -- 'sleep 0.5; echo head' 'head -c 10000000 /dev/zero' 'echo third-ok' 2>err.txt)
  expect_eq "2 MiB temp dir, a step too big" "rc=1" "$out"
  expect_eq "2 MiB temp dir, the others intact" $'head\nthird-ok' "$(cat out.txt)"
  grep -q "FAILED head -c 10000000 /dev/zero" err.txt && grep -q "No space left on device" err.txt ||
    fail "2 MiB temp dir summary: $(cat err.txt)"
else
  echo "SKIP: the 2 MiB tmpfs checks need root" >&2
fi

end_checks
