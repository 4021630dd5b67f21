// Fuzz target: the decoder of child-to-parent records (the bytes a hostile or
// crashed child leaves in its result file or worker socket).
//
//   tools/fuzz/run.sh 30        # libFuzzer with clang, seeded from
//   testing/fuzz_corpus/record bazel test
//   //parallel/internal:record_fuzzer_corpus_test   # the corpus, as a test

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "parallel/internal/record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<parallel::internal::Record>> records =
      parallel::internal::ParseRecords(bytes);
  // Incremental parsing must agree with whole parsing.
  absl::string_view view = bytes;
  size_t taken = 0;
  while (true) {
    parallel::internal::Record record;
    absl::StatusOr<bool> got = parallel::internal::TakeRecord(&view, &record);
    if (!got.ok() || !*got) break;
    ++taken;
  }
  if (records.ok() && records->size() != taken) std::abort();
  return 0;
}
