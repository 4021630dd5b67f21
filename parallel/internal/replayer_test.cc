#include "parallel/internal/replayer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>
#include <algorithm>

#include "gtest/gtest.h"

namespace parallel {
namespace internal {
namespace {

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// A pipe to read what the replayer writes.
struct Reader {
  Reader() {
    int ends[2];
    EXPECT_EQ(pipe2(ends, O_CLOEXEC | O_NONBLOCK), 0);
    read_end.reset(ends[0]);
    write_end.reset(ends[1]);
  }
  std::string Take() {
    std::string text;
    char buffer[4096];
    ssize_t n;
    while ((n = read(read_end.get(), buffer, sizeof(buffer))) > 0)
      text.append(buffer, n);
    return text;
  }
  UniqueFd read_end;
  UniqueFd write_end;
};

void Say(const UniqueFd& fd, const std::string& text) {
  ASSERT_EQ(write(fd.get(), text.data(), text.size()),
            static_cast<ssize_t>(text.size()));
}

TEST(Replayer, HeadIsLiveOthersWaitTheirTurnInOrder) {
  Reader reader;
  Replayer replayer(ReplayOptions{reader.write_end.get(), true, 2, TempDir(),
                                  false, nullptr});
  const size_t a = replayer.Add("a");
  const size_t b = replayer.Add("b");
  UniqueFd a_out, a_err, b_out, b_err;
  ASSERT_TRUE(replayer.Open(a, &a_out, &a_err).ok());
  ASSERT_TRUE(replayer.Open(b, &b_out, &b_err).ok());
  EXPECT_FALSE(a_err.valid());  // combined: one pipe
  Say(b_out, "b1\n");
  Say(a_out, "a1\n");
  replayer.Drain(a);
  replayer.Drain(b);
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "a1\n");  // b waits behind the live head
  b_out.reset();
  replayer.Close(b, false);
  Say(a_out, "a2\n");
  a_out.reset();
  replayer.Close(a, false);
  EXPECT_EQ(replayer.total(a), 6u);
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "a2\nb1\n");
  EXPECT_TRUE(replayer.all_replayed());
}

TEST(Replayer, LineBufferWritesWholeLinesOfEveryUnitAsTheyArrive) {
  Reader reader;
  ReplayOptions options{reader.write_end.get(), true, 2, TempDir(), true,
                        nullptr};
  options.line_buffer = true;
  Replayer replayer(options);
  const size_t a = replayer.Add("a");
  const size_t b = replayer.Add("b");
  UniqueFd a_out, a_err, b_out, b_err;
  ASSERT_TRUE(replayer.Open(a, &a_out, &a_err).ok());
  ASSERT_TRUE(replayer.Open(b, &b_out, &b_err).ok());
  Say(b_out, "b1\nb2 par");  // b is not the head, and still goes out
  Say(a_out, "a1 par");
  replayer.Drain(a);
  replayer.Drain(b);
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "b\tb1\n");  // partial lines wait
  Say(a_out, "tial\n");
  Say(b_out, "tial\nb3");
  replayer.Drain(b);
  replayer.Drain(a);
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "b\tb2 partial\na\ta1 partial\n");
  b_out.reset();
  replayer.Close(b, false);  // the unterminated last line goes out whole
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "b\tb3");
  EXPECT_EQ(replayer.total(a), 11u);  // "a1 partial\n"
  a_out.reset();
  replayer.Close(a, false);
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "");
  EXPECT_TRUE(replayer.all_replayed());
}

TEST(Replayer, LineBufferCutsOnlyLinesLongerThanASlice) {
  Reader reader;
  // A file, so that nothing blocks on a full pipe.
  const std::string path = TempDir() + "/line_buffer_long";
  UniqueFd file(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                       0600));
  ASSERT_TRUE(file.valid());
  ReplayOptions options{file.get(), true, 2, TempDir(), false, nullptr};
  options.line_buffer = true;
  Replayer replayer(options);
  const size_t a = replayer.Add("a");
  const size_t b = replayer.Add("b");
  UniqueFd a_out, a_err, b_out, b_err;
  ASSERT_TRUE(replayer.Open(a, &a_out, &a_err).ok());
  ASSERT_TRUE(replayer.Open(b, &b_out, &b_err).ok());
  const std::string long_line(Replayer::kLineSlice + 10, 'x');
  // Written in pieces so that no pipe fills up.
  for (size_t at = 0; at < long_line.size(); at += 4096) {
    Say(a_out, long_line.substr(at, 4096));
    replayer.Drain(a);
    replayer.Pump();
  }
  Say(b_out, "b\n");
  replayer.Drain(b);
  replayer.Pump();
  Say(a_out, "\n");
  replayer.Drain(a);
  replayer.Pump();
  a_out.reset();
  b_out.reset();
  replayer.Close(a, false);
  replayer.Close(b, false);
  replayer.Pump();
  EXPECT_TRUE(replayer.all_replayed());
  std::string written(long_line.size() + 3, '\0');
  ASSERT_EQ(::pread(file.get(), written.data(), written.size(), 0),
            static_cast<ssize_t>(written.size()));
  // The first kLineSlice bytes went out before b's line, the rest after.
  EXPECT_EQ(written, long_line.substr(0, Replayer::kLineSlice) + "b\n" +
                         long_line.substr(Replayer::kLineSlice) + "\n");
  ::unlink(path.c_str());
}

TEST(Replayer, InCompletionOrderEachUnitGoesOutWholeWhenClosed) {
  Reader reader;
  ReplayOptions options{reader.write_end.get(), true, 2, TempDir(), false,
                        nullptr};
  options.completion_order = true;
  Replayer replayer(options);
  const size_t a = replayer.Add("a");
  const size_t b = replayer.Add("b");
  const size_t c = replayer.Add("c");
  UniqueFd out[3], err[3];
  for (size_t unit : {a, b, c}) {
    ASSERT_TRUE(replayer.Open(unit, &out[unit], &err[unit]).ok());
  }
  Say(out[a], "a1\n");
  Say(out[b], "b1\n");
  Say(out[c], "c1\n");
  for (size_t unit : {a, b, c}) replayer.Drain(unit);
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "");  // nothing is live in completion order
  out[c].reset();
  replayer.Close(c, false);
  EXPECT_EQ(replayer.total(c), 3u);
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "c1\n");
  EXPECT_FALSE(replayer.all_replayed());
  Say(out[a], "a2\n");
  out[a].reset();
  replayer.Close(a, false);
  out[b].reset();
  replayer.Close(b, /*drop=*/true);
  replayer.Pump();
  EXPECT_EQ(reader.Take(), "a1\na2\n");
  EXPECT_TRUE(replayer.all_replayed());
  // A late call about a replayed unit is ignored.
  replayer.Drain(c);
  EXPECT_EQ(replayer.total(c), 0u);
}

TEST(Replayer, InCompletionOrderManyFinishedUnitsWaitForABlockedSink) {
  // More units close than kMaxHeld while the reader takes nothing: they are
  // spooled, then all come out, each whole, in the order they closed.
  Reader reader;
  ReplayOptions options{reader.write_end.get(), true, 2, TempDir(), false,
                        nullptr};
  options.completion_order = true;
  Replayer replayer(options);
  const size_t n = Replayer::kMaxHeld * 2;
  std::vector<size_t> units;
  for (size_t i = 0; i < n; ++i) units.push_back(replayer.Add(""));
  std::string expected;
  const std::string big(70000, 'x');  // more than a pipe holds: blocks
  for (size_t k = 0; k < n; ++k) {
    const size_t unit = units[n - 1 - k];  // the last added closes first
    UniqueFd out, err;
    ASSERT_TRUE(replayer.Open(unit, &out, &err).ok());
    const std::string text =
        (k == 0 ? big : "") + "unit " + std::to_string(unit) + "\n";
    size_t written = 0;
    while (written < text.size()) {  // the pipe holds 64 KiB: drain as we go
      const ssize_t w = write(out.get(), text.data() + written,
                              std::min<size_t>(4096, text.size() - written));
      ASSERT_GT(w, 0);
      written += w;
      replayer.Drain(unit);
    }
    out.reset();
    replayer.Close(unit, false);
    replayer.Pump();
    expected += text;
  }
  std::string got;
  for (int round = 0; round < 10000 && !replayer.all_replayed(); ++round) {
    got += reader.Take();
    DontForkVector<pollfd> fds;
    DontForkVector<size_t> owners;
    replayer.AppendPollFds(&fds, &owners);
    for (size_t i = 0; i < fds.size(); ++i) {
      if (owners[i] == Replayer::kSinkOwner) replayer.SinkWritable(fds[i].fd);
    }
    replayer.Pump();
  }
  ASSERT_TRUE(replayer.all_replayed());
  got += reader.Take();
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
}

TEST(Replayer, BytesQueuedInAPipeSurviveTheReuseOfTheirSpillFile) {
  // Unit 0 is written into the pipe and retired (its spill file goes back to
  // the pool) before anybody reads; unit 1 then reuses that file from offset
  // 0. A kernel copy into a pipe would queue references to the file's pages,
  // and the reader would see unit 1's bytes twice.
  Reader reader;
  Replayer replayer(ReplayOptions{reader.write_end.get(), true, 2, TempDir(),
                                  false, nullptr});
  for (const char* text : {"first unit\n", "SECOND\n"}) {
    const size_t unit = replayer.Add("u");
    UniqueFd out, err;
    ASSERT_TRUE(replayer.Open(unit, &out, &err).ok());
    Say(out, text);
    out.reset();
    replayer.Close(unit, false);
    replayer.Pump();
    ASSERT_TRUE(replayer.all_replayed());
  }
  EXPECT_EQ(reader.Take(), "first unit\nSECOND\n");
}

TEST(Replayer, SeparateStreamsTaggingAndDrop) {
  Reader out;
  Reader err;
  Replayer replayer(ReplayOptions{out.write_end.get(), false,
                                  err.write_end.get(), TempDir(), true,
                                  nullptr});
  const size_t a = replayer.Add("a");
  const size_t b = replayer.Add("b");
  UniqueFd a_out, a_err, b_out, b_err;
  ASSERT_TRUE(replayer.Open(a, &a_out, &a_err).ok());
  ASSERT_TRUE(replayer.Open(b, &b_out, &b_err).ok());
  Say(a_out, "x\ny");
  Say(a_err, "warn\n");
  Say(b_out, "dropped\n");
  a_out.reset();
  a_err.reset();
  b_out.reset();
  b_err.reset();
  replayer.Close(b, /*drop=*/true);
  replayer.Close(a, false);
  replayer.Pump();
  EXPECT_EQ(out.Take(), "a\tx\na\ty");
  EXPECT_EQ(err.Take(), "a\twarn\n");
  EXPECT_TRUE(replayer.all_replayed());
}

TEST(Replayer, ClosedReaderIsLatchedAsEpipeWithoutSigpipe) {
  Reader reader;
  reader.read_end.reset();
  Replayer replayer(ReplayOptions{reader.write_end.get(), true, 2, TempDir(),
                                  false, nullptr});
  const size_t a = replayer.Add("a");
  UniqueFd a_out, a_err;
  ASSERT_TRUE(replayer.Open(a, &a_out, &a_err).ok());
  Say(a_out, "lost\n");
  a_out.reset();
  replayer.Close(a, false);
  replayer.Pump();  // would die of SIGPIPE if it were raised
  EXPECT_EQ(replayer.output_error(), EPIPE);
  EXPECT_EQ(replayer.output_error_stream(), "stdout");
  EXPECT_TRUE(replayer.all_replayed());
}

// The descriptor the replayer polls for POLLOUT while its sink is blocked.
int replayer_poll_fd(const Replayer& replayer) {
  DontForkVector<pollfd> fds;
  DontForkVector<size_t> owners;
  replayer.AppendPollFds(&fds, &owners);
  for (size_t i = 0; i < fds.size(); ++i) {
    if (owners[i] == Replayer::kSinkOwner) return fds[i].fd;
  }
  return -1;
}

// A replayer whose head unit stays open, so that every unit closed after it
// finishes ahead of the head.
struct BehindAnOpenHead {
  BehindAnOpenHead() {
    UniqueFd unused;
    EXPECT_TRUE(replayer.Open(head, &head_out, &unused).ok());
  }
  // Adds a unit whose child writes `text` and ends; returns it.
  size_t Finish(const std::string& text) {
    const size_t unit = replayer.Add("u");
    UniqueFd out, err;
    EXPECT_TRUE(replayer.Open(unit, &out, &err).ok());
    if (!text.empty()) Say(out, text);
    out.reset();
    replayer.Close(unit, false);
    return unit;
  }

  Reader reader;
  Replayer replayer{ReplayOptions{reader.write_end.get(), true, 2, TempDir(),
                                  false, nullptr}};
  const size_t head = replayer.Add("head");
  UniqueFd head_out;
};

TEST(Replayer, UnitsThatKeptNoByteAreNotHeldAndPushNothingIntoTheSpool) {
  // A pool's units mostly end empty and ahead of the head: they have no file
  // to hold. Counted, they would fill kMaxHeld and push every unit with
  // output into the spool (a copy and a seek each).
  BehindAnOpenHead run;
  for (size_t i = 0; i < 3 * Replayer::kMaxHeld; ++i) run.Finish("");
  EXPECT_EQ(run.replayer.held(), 0u);
  std::string expected;
  for (int i = 0; i < 3; ++i) {
    const std::string text = "said " + std::to_string(i) + "\n";
    run.Finish(text);
    expected += text;
  }
  EXPECT_EQ(run.replayer.held(), 3u);
  Say(run.head_out, "head\n");
  run.head_out.reset();
  run.replayer.Close(run.head, false);
  std::string got;
  for (int round = 0; round < 1000 && !run.replayer.all_replayed(); ++round) {
    run.replayer.Pump();
    got += run.reader.Take();
  }
  EXPECT_TRUE(run.replayer.all_replayed());
  EXPECT_EQ(got, "head\n" + expected);
}

TEST(Replayer, ManyFinishedAheadOfTheHeadUseConstantDescriptors) {
  BehindAnOpenHead run;
  std::string expected;
  for (int i = 0; i < 200; ++i) {
    const std::string text = std::to_string(i) + "\n";
    run.Finish(text);
    expected += text;
  }
  std::vector<int> fds;
  run.replayer.AppendFds(&fds);
  EXPECT_LT(fds.size(), Replayer::kMaxHeld + SpillPool::kMaxPooled + 8);
  run.head_out.reset();
  run.replayer.Close(run.head, false);
  // Each small kernel copy into a pipe takes one of its 16 buffer slots: the
  // sink fills up long before 64 KiB and waits for the reader.
  std::string got;
  while (!run.replayer.all_replayed()) {
    run.replayer.Pump();
    got += run.reader.Take();
    run.replayer.SinkWritable(replayer_poll_fd(run.replayer));
  }
  EXPECT_EQ(got, expected);
}

}  // namespace
}  // namespace internal
}  // namespace parallel
