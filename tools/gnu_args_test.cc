#include "tools/gnu_args.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tools {
namespace {

using ::testing::ElementsAre;

TEST(ShellQuote, QuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(ShellQuote("a.log"), "a.log");
  EXPECT_EQ(ShellQuote("dir/x-1_2.c"), "dir/x-1_2.c");
  EXPECT_EQ(ShellQuote("two words"), "'two words'");
  EXPECT_EQ(ShellQuote("it's; rm -rf $HOME"), "'it'\\''s; rm -rf $HOME'");
  EXPECT_EQ(ShellQuote(""), "''");
}

TEST(FillTemplate, EveryReplacementString) {
  const std::vector<std::string> arg = {"src/dir/file.tar.gz"};
  EXPECT_EQ(FillTemplate("x {} {.} {/} {//} {/.} {#}", arg, 7),
            "x src/dir/file.tar.gz src/dir/file.tar file.tar.gz src/dir "
            "file.tar 7");
}

TEST(FillTemplate, TheSlotComesFromTheEnvironment) {
  EXPECT_EQ(FillTemplate("echo {%} {}", {"a"}, 1), "echo $PARALLEL_JOBSLOT a");
}

TEST(FillTemplate, FormsOfAPlainName) {
  EXPECT_EQ(FillTemplate("{.}|{/}|{//}|{/.}", {"file.c"}, 1),
            "file|file.c|.|file");
  EXPECT_EQ(FillTemplate("{.}|{/.}", {"dir.d/noext"}, 1),
            "dir.d/noext|noext");
  EXPECT_EQ(FillTemplate("{.}", {".hidden"}, 1), ".hidden");
}

TEST(FillTemplate, AppendsWithoutReplacementStringsAndQuotes) {
  EXPECT_EQ(FillTemplate("gzip -9", {"a b.log"}, 1), "gzip -9 'a b.log'");
  EXPECT_EQ(FillTemplate("echo {1} {2} {}", {"x", "y z"}, 1),
            "echo x 'y z' x 'y z'");
  EXPECT_EQ(FillTemplate("echo {x} {} {{}", {"a"}, 1), "echo {x} a {a");
}

TEST(ExpandTemplate, CrossProductLastSourceFastest) {
  absl::StatusOr<std::vector<std::string>> got =
      ExpandTemplate("echo {1}{2} {#}", {{"a", "b"}, {"1", "2", "3"}}, false);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(*got, ElementsAre("echo a1 1", "echo a2 2", "echo a3 3",
                                "echo b1 4", "echo b2 5", "echo b3 6"));
}

TEST(ExpandTemplate, LinkTakesSourcesSideBySideAndWraps) {
  absl::StatusOr<std::vector<std::string>> got =
      ExpandTemplate("echo {1}{2}", {{"a", "b"}, {"1", "2", "3"}}, true);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(*got, ElementsAre("echo a1", "echo b2", "echo a3"));
}

TEST(ExpandTemplate, EmptySourceAndBadPositions) {
  EXPECT_THAT(*ExpandTemplate("echo {}", {{}}, false), ElementsAre());
  absl::StatusOr<std::vector<std::string>> bad =
      ExpandTemplate("echo {3}", {{"a"}}, false);
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_EQ(bad.status().message(),
            "'{3}' names input source 3 but there are 1");
}

}  // namespace
}  // namespace tools
