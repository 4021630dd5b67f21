// Linked with //parallel:throw_traces: tracebacks show the throw site.

#include <stdexcept>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/parallel.h"

namespace parallel {
namespace {

using ::testing::HasSubstr;

[[gnu::noinline]] void ThrowDeepInside() {
  throw std::logic_error("thrown here");
}

TEST(ThrowTraces, TracebackShowsTheThrowSite) {
  try {
    RunParallelSteps({[] { ThrowDeepInside(); }});
    FAIL() << "expected BackgroundFailure";
  } catch (const BackgroundFailure& failure) {
    ASSERT_EQ(failure.exc_infos().size(), 1u);
    EXPECT_EQ(failure.exc_infos()[0].type, "std::logic_error");
    EXPECT_THAT(failure.exc_infos()[0].traceback, HasSubstr("ThrowDeepInside"));
  }
}

}  // namespace
}  // namespace parallel
