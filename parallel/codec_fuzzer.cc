// Fuzz target: parallel::Codec decoding of untrusted bytes, for a type that
// nests every built-in codec. Decoding must never crash, hang or allocate
// beyond what the input could hold; what decodes must re-encode to the same
// bytes (canonical encoding), except for floating point NaN payloads.
//
//   tools/fuzz/run.sh 30        # libFuzzer with clang, seeded from
//   testing/fuzz_corpus/codec bazel test //parallel:codec_fuzzer_corpus_test #
//   the corpus, as a test

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/codec.h"

namespace {

enum class Color : uint8_t { kRed, kGreen };

using Everything =
    std::tuple<bool, uint8_t, int64_t, Color, std::string, std::vector<int32_t>,
               std::map<std::string, std::optional<uint16_t>>, std::set<int>,
               std::pair<std::string, bool>, absl::Status,
               absl::StatusOr<std::vector<std::string>>>;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  Everything value;
  if (parallel::DecodeInto(bytes, &value).ok()) {
    // Varints have one canonical form only if decoding rejects overlong
    // ones; we accept them, so compare values, not bytes.
    Everything again;
    if (!parallel::DecodeInto(parallel::Encode(value), &again).ok() ||
        !(again == value)) {
      std::abort();
    }
  }
  double number;
  (void)parallel::DecodeInto(bytes, &number);
  std::vector<std::vector<std::string>> nested;
  (void)parallel::DecodeInto(bytes, &nested);
  return 0;
}
