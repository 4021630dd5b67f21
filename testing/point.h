// A small user type with a parallel::Codec specialization: how a type of
// your own becomes encodable (parallel/codec.h), shared by tests.

#ifndef TESTING_POINT_H_
#define TESTING_POINT_H_

#include <string>

#include "absl/strings/string_view.h"
#include "parallel/codec.h"

namespace parallel {
namespace testing {

struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point& other) const {
    return x == other.x && y == other.y;
  }
};

}  // namespace testing

template <>
struct Codec<testing::Point> {
  static void Encode(const testing::Point& p, std::string* out) {
    Codec<int>::Encode(p.x, out);
    Codec<int>::Encode(p.y, out);
  }
  static bool Decode(absl::string_view* in, testing::Point* out) {
    return Codec<int>::Decode(in, &out->x) && Codec<int>::Decode(in, &out->y);
  }
};

}  // namespace parallel

#endif  // TESTING_POINT_H_
