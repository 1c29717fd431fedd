// The agent's small pieces: line splitting of worker output, environment merging, PATH
// resolution.
#include <sys/stat.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "line_splitter.h"
#include "process_spawn.h"
#include "test_util.h"

namespace colossus::launcher::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Split(const std::vector<std::string>& chunks, size_t max_line,
                               bool flush = true) {
  LineSplitter splitter(max_line);
  std::vector<std::string> lines;
  auto collect = [&](std::string_view line) { lines.emplace_back(line); };
  for (const std::string& c : chunks) splitter.Append(c, collect);
  if (flush) splitter.Flush(collect);
  return lines;
}

TEST(LineSplitterTest, LinesAcrossChunks) {
  EXPECT_THAT(Split({"ab", "c\nde", "f\n\ng"}, 100), ElementsAre("abc", "def", "", "g"));
  EXPECT_THAT(Split({"abc\n"}, 100), ElementsAre("abc"));
  EXPECT_THAT(Split({"no end"}, 100, /*flush=*/false), ElementsAre());
  EXPECT_THAT(Split({"no end"}, 100), ElementsAre("no end"));
}

TEST(LineSplitterTest, LongLinesAreCutAtTheLimit) {
  EXPECT_THAT(Split({"abcdefgh\n"}, 3), ElementsAre("abc", "def", "gh"));
  EXPECT_THAT(Split({"ab", "cdef", "g\n"}, 3), ElementsAre("abc", "def", "g"));
  // A newline right at the limit ends that piece; no empty line follows.
  EXPECT_THAT(Split({"abc\nd\n"}, 3), ElementsAre("abc", "d"));
}

TEST(MergeEnvironmentTest, OverridesReplaceAndAppend) {
  EXPECT_THAT(MergeEnvironment({"A=1", "B=2", "C=3"}, {{"B", "x"}, {"D", "4"}, {"A", "y"}}),
              ElementsAre("A=y", "B=x", "C=3", "D=4"));
  EXPECT_THAT(MergeEnvironment({"EMPTY="}, {}), ElementsAre("EMPTY="));
  // The last override of a key wins.
  EXPECT_THAT(MergeEnvironment({}, {{"K", "1"}, {"K", "2"}}), ElementsAre("K=2"));
}

TEST(ResolveExecutableTest, SearchesPathLikeExecvp) {
  auto sh = ResolveExecutable("sh", "/nonexistent:/bin:/usr/bin");
  ASSERT_TRUE(sh.ok()) << sh.status();
  EXPECT_EQ(*sh, "/bin/sh");
  EXPECT_EQ(*ResolveExecutable("./relative/prog", "/bin"), "./relative/prog");
  auto missing = ResolveExecutable("colossus-no-such", "/bin:/usr/bin");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("'colossus-no-such' not found on PATH (/bin:/usr/bin)"));
  // A directory or a non-executable file on PATH is not a match.
  testing::TempDir dir;
  std::filesystem::create_directories(dir / "prog");
  { std::ofstream(dir / "data") << "x"; }
  chmod((dir / "data").c_str(), 0644);
  EXPECT_FALSE(ResolveExecutable("prog", dir.path()).ok());
  EXPECT_FALSE(ResolveExecutable("data", dir.path()).ok());
}

}  // namespace
}  // namespace colossus::launcher::internal
