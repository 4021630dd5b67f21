// GoogleTest assertions inside steps, reported where they were written.
//
// A step's body runs in a forked child (a task runner input in a worker);
// an EXPECT_* or ASSERT_* that fails there would only fail the child's copy
// of the test, which dies with it. Link this library into a gtest binary
// (deps = ["//testing:gtest_bridge"]; nothing to call) and every gtest
// failure raised inside a step, a BackgroundTaskRunner input or a
// RunTasksInProcessPool task — EXPECT_*, ASSERT_*, ADD_FAILURE, FAIL,
// EXPECT_THAT, gMock expectations checked in the child —
//  - fails that step, with type testing::TestPartResult and gtest's text
//    ("file.cc:12: Failure\nExpected equality of these values: ..."); and
//  - is reported in the calling test at the assertion's own file and line,
//    fatal or not as it was, with "[in step 1 (pid 4242)]" appended: the
//    test fails as if the assertion had run in the caller, and IDEs and CI
//    that parse gtest output point at the right line.
// The child does not print the failure itself (the caller does, once). A
// step without gtest failures is unaffected; a nonfatal failure lets the
// step run on; ASSERT_* returns from the function it is in, as in any test.
// A step that also throws or crashes reports that too (the assertion was
// sent to the caller the moment it failed). Nested runs pass failures up
// level by level, each adding its step. Under the in-process fake
// (in_process_steps.h) assertions already run in the caller; the step fails
// too, so RunParallelSteps throws as it would with processes.
//
// Without the bridge, the library's fallback still fails such a step (type
// testing::TestPartResult, "link //testing:gtest_bridge ...") and prints a
// warning in its output when the test went from passing to failing inside
// the child — never a silent pass, but no file:line (step_observer.h).
//
//   TEST(Build, AllBoardsCompile) {
//     parallel::RunParallelSteps({[] { EXPECT_EQ(Compile("a"), 0); },
//                                 [] { EXPECT_EQ(Compile("b"), 0); }});
//   }
//
// Thread-safety: assertions may fail on any thread of a child.

#ifndef TESTING_GTEST_BRIDGE_H_
#define TESTING_GTEST_BRIDGE_H_

namespace parallel {
namespace testing {

// Whether the bridge is linked in and registered (for tests of tests).
bool GtestBridgeActive();

}  // namespace testing
}  // namespace parallel

#endif  // TESTING_GTEST_BRIDGE_H_
