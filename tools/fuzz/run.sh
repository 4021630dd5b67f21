#!/bin/bash
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# and runs each for SECONDS (default 30, split between the targets), seeded
# from testing/fuzz_corpus/. New inputs go to a scratch corpus, never into the
# repository; a crash leaves its input in the scratch directory and fails.
#
#   tools/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -I.)
absl_libs=$(pkg-config --libs absl_status absl_statusor absl_strings absl_str_format absl_time)

build() {  # name, sources...
  local name=$1
  shift
  clang++ "${flags[@]}" "$@" $absl_libs -o "$work/$name"
}
# The three builds side by side (CI's machines have two cores).
build record_fuzzer parallel/internal/record_fuzzer.cc parallel/internal/record.cc \
  parallel/internal/fd.cc &
record_build=$!
build codec_fuzzer parallel/codec_fuzzer.cc &
codec_build=$!
build reports_fuzzer tools/reports_fuzzer.cc tools/reports.cc parallel/step.cc parallel/failure.cc \
  parallel/report_text.cc parallel/trace.cc
wait "$record_build"
wait "$codec_build"

per_target=$((seconds / 3))
status=0
for target in record codec reports; do
  mkdir -p "$work/corpus_$target"
  cp testing/fuzz_corpus/$target/* "$work/corpus_$target/"
  echo "fuzzing $target for ${per_target}s"
  if ! "$work/${target}_fuzzer" -max_total_time="$per_target" -max_len=4096 \
      -rss_limit_mb=1024 -artifact_prefix="$work/" "$work/corpus_$target" \
      2>"$work/$target.log"; then
    echo "FUZZ FAILURE in $target:" >&2
    tail -40 "$work/$target.log" >&2
    status=1
  else
    grep -E "^#[0-9]+ +DONE" "$work/$target.log" || tail -2 "$work/$target.log"
  fi
done
exit "$status"
