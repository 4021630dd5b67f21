#!/bin/bash
# Installs every Debian package the build, the tests and the benchmarks need.
# Idempotent: when everything is present it only checks, in well under a second.
set -euo pipefail

packages=(
  bazel-bootstrap   # Bazel 4.2.3, the only Bazel Debian ships
  build-essential   # g++ 12
  pkg-config        # describes the system libraries to Bazel (tools/pkg_config.bzl)
  libabsl-dev       # Abseil LTS 20220623
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  make              # the jobserver test runs a real make -j
  cmake             # the non-Bazel build (CMakeLists.txt, tools/cmake/)
  chromium          # renders the --timeline HTML headless in a test
  parallel          # GNU parallel, a peer in tools/bench/
  python3           # tools/bench/ scripts and report parsing in tests
  python3-pebble    # a peer in tools/bench/executor_vs_python.sh
  python3-joblib    # vendors loky, a peer in tools/bench/executor_vs_python.sh
  clang             # libFuzzer targets (tools/fuzz/run.sh)
  libclang-rt-14-dev  # libFuzzer's runtime (only recommended by clang)
  procps            # ps, used by the tool's tests
  slurmctld         # a one-node Slurm cluster for the --slurm tests
  slurmd            #   (tools/slurm/local_cluster.sh)
  slurm-client      #   srun, salloc, squeue, scancel
  munge             #   Slurm's authentication
  bc                # arithmetic in tools/bench/ scripts
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ((EUID != 0)); then
  echo "setup.sh: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Only refresh the package lists when an install from the current ones fails.
if ! apt-get install -y --no-install-recommends "${missing[@]}" </dev/null; then
  apt-get update </dev/null
  apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
fi
