#!/bin/bash
# ctest's wrapper (CMakeLists.txt's parallel_add_test): a fresh, empty
# $TEST_TMPDIR for each run, as Bazel gives, then the test itself.
set -euo pipefail
rm -rf "$TEST_TMPDIR"
mkdir -p "$TEST_TMPDIR"
if [[ $1 == *.sh ]]; then
  exec /bin/bash "$@"
fi
exec "$@"
