#include "absl/status/status.h"
#include "gtest/gtest.h"
TEST(Probe, Works) { EXPECT_TRUE(absl::OkStatus().ok()); }
