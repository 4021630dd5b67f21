# Shared by the end-to-end shell tests: counts failed checks and ends with the
# verdict. Source it after cd-ing into the test's work directory.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../testing/checks.sh"
#   expect_eq "exit status" 3 $?
#   [[ -s out.txt ]] || fail "no output"
#   end_checks   # exits 1 if any check failed

failures=0

# Records a failed check, with what it was.
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

expect_eq() {  # name expected actual
  if [[ "$2" != "$3" ]]; then
    fail "$1: expected [$2], got [$3]"
  fi
}

# The last line of a test: exits 1 if any check failed. $1, if given, is
# what to call the checks ("Slurm checks").
end_checks() {
  if ((failures > 0)); then
    echo "$failures check(s) failed" >&2
    exit 1
  fi
  echo "all ${1:-checks} passed"
}
