#include "parallel/codec.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/point.h"

namespace parallel {
namespace {

using ::parallel::testing::Point;

enum class Color : uint8_t { kRed = 1, kBlue = 200 };

// Looks like a protobuf message: detected by its two methods.
struct FakeMessage {
  std::string payload;
  bool SerializeToString(std::string* out) const {
    *out = "msg:" + payload;
    return true;
  }
  bool ParseFromString(const std::string& in) {
    if (in.rfind("msg:", 0) != 0) return false;
    payload = in.substr(4);
    return true;
  }
};

template <typename T>
T RoundTrip(const T& value) {
  T back{};
  const absl::Status status = DecodeInto(Encode(value), &back);
  EXPECT_TRUE(status.ok()) << status;
  return back;
}

template <typename T>
bool Decodes(absl::string_view bytes) {
  T value{};
  return DecodeInto(bytes, &value).ok();
}

TEST(Codec, RoundTripsScalars) {
  EXPECT_EQ(RoundTrip(true), true);
  EXPECT_EQ(RoundTrip(false), false);
  EXPECT_EQ(RoundTrip(0), 0);
  EXPECT_EQ(RoundTrip(-1), -1);
  EXPECT_EQ(RoundTrip(std::numeric_limits<int64_t>::min()),
            std::numeric_limits<int64_t>::min());
  EXPECT_EQ(RoundTrip(std::numeric_limits<int64_t>::max()),
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(RoundTrip(std::numeric_limits<uint64_t>::max()),
            std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(RoundTrip<char>('x'), 'x');
  EXPECT_EQ(RoundTrip(3.25), 3.25);
  EXPECT_EQ(RoundTrip(-0.5f), -0.5f);
  EXPECT_TRUE(std::isnan(RoundTrip(std::nan(""))));
  EXPECT_EQ(RoundTrip(std::numeric_limits<double>::infinity()),
            std::numeric_limits<double>::infinity());
  EXPECT_EQ(RoundTrip(Color::kBlue), Color::kBlue);
}

TEST(Codec, RoundTripsContainers) {
  EXPECT_EQ(RoundTrip(std::string("bytes\0with nul", 14)),
            std::string("bytes\0with nul", 14));
  EXPECT_EQ(RoundTrip(std::vector<int>{1, -2, 3}),
            (std::vector<int>{1, -2, 3}));
  EXPECT_EQ(RoundTrip(std::vector<bool>{true, false}),
            (std::vector<bool>{true, false}));
  EXPECT_EQ(RoundTrip(std::optional<std::string>()), std::nullopt);
  EXPECT_EQ(RoundTrip(std::optional<std::string>("x")), "x");
  EXPECT_EQ(RoundTrip(std::make_pair(std::string("k"), 2.5)),
            std::make_pair(std::string("k"), 2.5));
  EXPECT_EQ(RoundTrip(std::make_tuple(1, std::string("two"), false)),
            std::make_tuple(1, std::string("two"), false));
  const std::map<std::string, std::vector<int>> map = {{"a", {}}, {"b", {1}}};
  EXPECT_EQ(RoundTrip(map), map);
  EXPECT_EQ(RoundTrip(std::set<int>{3, 1, 2}), (std::set<int>{1, 2, 3}));
}

TEST(Codec, RoundTripsStatusAndStatusOr) {
  EXPECT_EQ(RoundTrip(absl::OkStatus()), absl::OkStatus());
  EXPECT_EQ(RoundTrip(absl::NotFoundError("gone")),
            absl::NotFoundError("gone"));
  absl::StatusOr<int> value = RoundTrip(absl::StatusOr<int>(5));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 5);
  EXPECT_EQ(RoundTrip(absl::StatusOr<int>(absl::InternalError("e"))).status(),
            absl::InternalError("e"));
}

TEST(Codec, RoundTripsUserTypesThroughTheHook) {
  EXPECT_EQ(RoundTrip(Point{3, -4}), (Point{3, -4}));
  EXPECT_EQ(RoundTrip(std::vector<Point>{{1, 2}, {3, 4}}),
            (std::vector<Point>{{1, 2}, {3, 4}}));
}

TEST(Codec, RoundTripsProtobufLikeTypes) {
  FakeMessage message;
  message.payload = "hello";
  EXPECT_EQ(RoundTrip(message).payload, "hello");
}

TEST(Codec, RoundTripsLargeStrings) {
  const std::string big(64 << 20, 'q');
  EXPECT_EQ(RoundTrip(big), big);
}

TEST(Codec, RejectsTruncatedInputAtEveryLength) {
  const std::string bytes = Encode(std::make_tuple(
      std::string("some text"), std::vector<int64_t>{1, 1 << 20, -7},
      std::map<int, std::string>{{1, "x"}}, 2.5, absl::NotFoundError("y")));
  using Type = std::tuple<std::string, std::vector<int64_t>,
                          std::map<int, std::string>, double, absl::Status>;
  ASSERT_TRUE(Decodes<Type>(bytes));
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_FALSE(Decodes<Type>(bytes.substr(0, length))) << length;
  }
}

TEST(Codec, RejectsTrailingBytes) {
  absl::StatusOr<int> value = Decode<int>(Encode(1) + "x");
  EXPECT_FALSE(value.ok());
  EXPECT_THAT(std::string(value.status().message()),
              ::testing::HasSubstr("trailing"));
}

TEST(Codec, RejectsOutOfRangeAndForgedValues) {
  EXPECT_FALSE(Decode<int8_t>(Encode<int64_t>(300)).ok());
  EXPECT_FALSE(Decode<uint8_t>(Encode<uint64_t>(256)).ok());
  EXPECT_FALSE(Decode<bool>(std::string(1, '\x02')).ok());
  // A count far beyond the input must not allocate: it is rejected outright.
  EXPECT_FALSE(
      Decode<std::vector<int>>("\xff\xff\xff\xff\xff\xff\xff\x7f").ok());
  EXPECT_FALSE(
      Decode<std::string>("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").ok());
  // An 11-byte varint overflows 64 bits.
  EXPECT_FALSE(Decode<uint64_t>(std::string(10, '\xff') + "\x01").ok());
  EXPECT_FALSE(Decodes<absl::Status>("\x63"));  // code 99
}

TEST(Codec, SurvivesRandomCorruption) {
  using Type = std::map<std::string, std::vector<std::optional<double>>>;
  const std::string good = Encode(Type{{"a", {1.0, std::nullopt}}, {"bc", {}}});
  std::mt19937 random(42);
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = good;
    const int flips = 1 + random() % 4;
    for (int f = 0; f < flips; ++f) {
      bytes[random() % bytes.size()] = static_cast<char>(random());
    }
    (void)Decode<Type>(bytes);  // must neither crash nor hang
  }
  for (int i = 0; i < 2000; ++i) {
    std::string noise(random() % 64, '\0');
    for (char& c : noise) c = static_cast<char>(random());
    (void)Decode<Type>(noise);
  }
}

}  // namespace
}  // namespace parallel
