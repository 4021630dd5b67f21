#!/bin/bash
# Builds the library with CMake, installs it into a temporary prefix, then
# builds testing/cmake_consumer/consumer.cc against the installed copy twice
# — with find_package(parallel CONFIG REQUIRED) and with one g++ line from
# pkg-config — and runs both, checking their output. Also runs ctest.
#
#   tools/cmake/consumer_test.sh [build-dir]   (default: a temp dir)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
build=${1:-$scratch/build}
prefix=$scratch/prefix
jobs=$(nproc)

python3 tools/cmake/check_sources.py
# PARALLEL_BUILD_BENCHMARKS=OFF: .ci/run's (Bazel built them already).
# PARALLEL_CMAKE_BUILD_TYPE (default Release): .ci/run's is None, with
# CXXFLAGS=-O1 (CMake takes CXXFLAGS from the environment).
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="${PARALLEL_CMAKE_BUILD_TYPE:-Release}" \
  -DPARALLEL_BUILD_BENCHMARKS="${PARALLEL_BUILD_BENCHMARKS:-ON}" >/dev/null
cmake --build "$build" -j "$jobs"
# CTEST_EXCLUDE: a regular expression of tests to leave out (.ci/run's).
[[ ${SKIP_CTEST:-0} == 1 ]] || (cd "$build" && ctest --output-on-failure -j "$jobs" --timeout 600 \
  ${CTEST_EXCLUDE:+-E "$CTEST_EXCLUDE"})
cmake --install "$build" --prefix "$prefix" >/dev/null

expected=$'step one\nstep two\ninput 1\ninput 2\ncaught 1 failure'
check() {  # name binary
  local got
  got=$("$2")
  if [[ $got != "$expected" ]]; then
    echo "consumer_test: the $1 build printed:" >&2
    echo "$got" >&2
    exit 1
  fi
  echo "consumer_test: the $1 build runs"
}

cmake -S testing/cmake_consumer -B "$scratch/consumer" \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$scratch/consumer" >/dev/null
check find_package "$scratch/consumer/consumer"

# The bridge: the test fails (exit 1) with the failure at the EXPECT's line,
# the step named — which only the bridge does.
line=$(grep -n marker-consumer testing/cmake_consumer/bridge_consumer.cc | cut -d: -f1)
check_bridge() {  # name binary
  local out status=0
  out=$("$2" 2>&1) || status=$?
  if ((status != 1)) || ! grep -q "bridge_consumer.cc:$line: Failure" <<<"$out" ||
     ! grep -q "^\[in step 0 (pid [0-9]*)\]" <<<"$out"; then
    echo "consumer_test: the $1 bridge build (exit $status) printed:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "consumer_test: the $1 bridge build reports the step's failure"
}
check_bridge find_package "$scratch/consumer/bridge_consumer"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
g++ -o "$scratch/consumer_pc" testing/cmake_consumer/consumer.cc \
  $(pkg-config --cflags --libs parallel)
check pkg-config "$scratch/consumer_pc"
g++ -o "$scratch/bridge_consumer_pc" testing/cmake_consumer/bridge_consumer.cc \
  $(pkg-config --cflags --libs parallel_gtest_bridge gtest_main)
check_bridge pkg-config "$scratch/bridge_consumer_pc"
