// The journal's contract (launcher/include/colossus/launcher/journal.h) checked on real
// files: what a restarted coordinator gets back after a crash cut the last write short,
// after bit rot, on a foreign file, with a second coordinator running, and on a full disk.
#include "colossus/launcher/journal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kFileHeader = 8;
constexpr int64_t kRecordHeader = 16;

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp",
                                    "/colossus_journal_test.XXXXXX");
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << tmpl << ": " << std::strerror(errno);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

int64_t FileSize(const std::string& path) {
  return static_cast<int64_t>(std::filesystem::file_size(path));
}

// A payload whose every byte depends on (index, position), with zeros and 0xff in it.
std::string Payload(int index, size_t size) {
  std::string p(size, '\0');
  for (size_t i = 0; i < size; ++i) p[i] = static_cast<char>((index * 131 + i * 7) & 0xff);
  return p;
}

// Writes the payloads through the Journal API and returns the offset of each record.
std::vector<int64_t> WriteJournal(const std::string& path,
                                  const std::vector<std::string>& records) {
  JournalReplay replay;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(path, &replay);
  EXPECT_TRUE(journal.ok()) << journal.status();
  std::vector<int64_t> offsets;
  if (!journal.ok()) return offsets;
  for (const std::string& r : records) {
    offsets.push_back((*journal)->size_bytes());
    EXPECT_TRUE((*journal)->Append(r).ok());
  }
  return offsets;
}

TEST(JournalTest, RoundTripAndReopen) {
  TempDir dir;
  const std::string path = dir.path() + "/journal";
  const std::vector<std::string> first = {"generation 1", "", std::string("a\0b\xff", 4),
                                          Payload(3, 5000)};
  {
    JournalReplay replay;
    auto journal = Journal::Open(path, &replay);
    ASSERT_TRUE(journal.ok()) << journal.status();
    EXPECT_THAT(replay.records, IsEmpty());
    EXPECT_EQ(replay.warning, "");
    EXPECT_EQ(replay.good_bytes, kFileHeader);
    EXPECT_EQ((*journal)->path(), path);
    int64_t expected_size = kFileHeader;
    for (const std::string& r : first) {
      ASSERT_TRUE((*journal)->Append(r).ok());
      expected_size += kRecordHeader + static_cast<int64_t>(r.size());
      EXPECT_EQ((*journal)->size_bytes(), expected_size);
      // Durable means on disk when Append returns, not at close.
      EXPECT_EQ(FileSize(path), expected_size);
    }
  }
  JournalReplay replay;
  {
    auto journal = Journal::Open(path, &replay);
    ASSERT_TRUE(journal.ok()) << journal.status();
    EXPECT_THAT(replay.records, ElementsAreArray(first));
    EXPECT_EQ(replay.warning, "");
    EXPECT_EQ(replay.good_bytes, FileSize(path));
    EXPECT_EQ((*journal)->size_bytes(), FileSize(path));
    ASSERT_TRUE((*journal)->Append("after reopen").ok());
  }
  auto journal = Journal::Open(path, &replay);
  ASSERT_TRUE(journal.ok()) << journal.status();
  std::vector<std::string> all = first;
  all.push_back("after reopen");
  EXPECT_THAT(replay.records, ElementsAreArray(all));
  EXPECT_EQ(replay.warning, "");
}

// The bytes on disk are the documented format, so that other tools can read a journal.
TEST(JournalTest, OnDiskFormatIsTheDocumentedOne) {
  TempDir dir;
  const std::string path = dir.path() + "/journal";
  WriteJournal(path, {"hello"});
  const std::string bytes = ReadFile(path);
  ASSERT_EQ(bytes.size(), size_t{kFileHeader + kRecordHeader + 5});
  EXPECT_EQ(bytes.substr(0, 8), "CLSJRNL1");
  EXPECT_EQ(bytes.substr(8, 4), "CLSR");
  EXPECT_EQ(bytes.substr(12, 4), std::string("\x05\0\0\0", 4));
  std::string hashed = bytes.substr(12, 4) + "hello";
  const uint64_t h = XXH64(hashed.data(), hashed.size(), 0);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(static_cast<unsigned char>(bytes[16 + i]), (h >> (8 * i)) & 0xff) << "byte " << i;
  }
  EXPECT_EQ(bytes.substr(24), "hello");
}

// A crash mid-write leaves any prefix of the last record on disk. Every cut must give
// back the earlier records, say where it cut, and let the next append follow them.
TEST(JournalTest, TornTailAtEveryByteOfTheLastRecord) {
  TempDir dir;
  const std::string path = dir.path() + "/journal";
  const std::vector<std::string> records = {Payload(0, 10), Payload(1, 300), Payload(2, 37)};
  const std::vector<int64_t> offsets = WriteJournal(path, records);
  const std::string full = ReadFile(path);
  const int64_t last = offsets.back();
  ASSERT_EQ(static_cast<int64_t>(full.size()), last + kRecordHeader + 37);

  for (int64_t cut = last; cut < static_cast<int64_t>(full.size()); ++cut) {
    SCOPED_TRACE(absl::StrCat("file cut at byte ", cut));
    WriteFile(path, full.substr(0, static_cast<size_t>(cut)));
    {
      JournalReplay replay;
      auto journal = Journal::Open(path, &replay);
      ASSERT_TRUE(journal.ok()) << journal.status();
      EXPECT_THAT(replay.records, ElementsAre(records[0], records[1]));
      EXPECT_EQ(replay.good_bytes, last);
      EXPECT_EQ(FileSize(path), last) << "the torn tail is truncated at open";
      if (cut == last) {
        EXPECT_EQ(replay.warning, "") << "a file ending on a record boundary is not torn";
      } else {
        EXPECT_THAT(replay.warning, HasSubstr(path));
        EXPECT_THAT(replay.warning, HasSubstr(absl::StrCat("offset ", last)));
      }
      ASSERT_TRUE((*journal)->Append("next").ok());
      EXPECT_EQ((*journal)->size_bytes(), last + kRecordHeader + 4);
    }
    JournalReplay replay;
    auto journal = Journal::Open(path, &replay);
    ASSERT_TRUE(journal.ok()) << journal.status();
    EXPECT_THAT(replay.records, ElementsAre(records[0], records[1], "next"));
    EXPECT_EQ(replay.warning, "");
  }
}

// Every byte of a record (magic, length, checksum, payload) flipped in turn, in the last
// record and in a middle one: the records before it come back, it and everything after
// it are dropped, and the warning names the file and the record's offset.
void ExpectFlipsDetected(int victim) {
  TempDir dir;
  const std::string path = dir.path() + "/journal";
  std::vector<std::string> records;
  for (int i = 0; i < 5; ++i) records.push_back(Payload(i, 20 + 3 * i));
  const std::vector<int64_t> offsets = WriteJournal(path, records);
  const std::string full = ReadFile(path);
  const int64_t start = offsets[static_cast<size_t>(victim)];
  const int64_t end = start + kRecordHeader + static_cast<int64_t>(records[victim].size());
  const std::vector<std::string> kept(records.begin(), records.begin() + victim);

  for (int64_t at = start; at < end; ++at) {
    const int64_t field = at - start;
    SCOPED_TRACE(absl::StrCat("record ", victim, " byte ", field,
                              field < 4 ? " (magic)" : field < 8 ? " (length)"
                              : field < 16 ? " (checksum)" : " (payload)"));
    std::string bad = full;
    bad[static_cast<size_t>(at)] ^= 0x5a;
    WriteFile(path, bad);
    {
      JournalReplay replay;
      auto journal = Journal::Open(path, &replay);
      ASSERT_TRUE(journal.ok()) << journal.status();
      EXPECT_THAT(replay.records, ElementsAreArray(kept));
      EXPECT_EQ(replay.good_bytes, start);
      EXPECT_EQ(FileSize(path), start);
      EXPECT_THAT(replay.warning, HasSubstr(path));
      EXPECT_THAT(replay.warning, HasSubstr(absl::StrCat("offset ", start)));
      if (field < 4) {
        EXPECT_THAT(replay.warning, HasSubstr("magic"));
      } else if (field >= 8) {
        EXPECT_THAT(replay.warning, HasSubstr("checksum"));
      }
      ASSERT_TRUE((*journal)->Append("fresh").ok());
    }
    JournalReplay replay;
    auto journal = Journal::Open(path, &replay);
    ASSERT_TRUE(journal.ok()) << journal.status();
    std::vector<std::string> expected = kept;
    expected.push_back("fresh");
    EXPECT_THAT(replay.records, ElementsAreArray(expected));
    EXPECT_EQ(replay.warning, "");
  }
}

TEST(JournalTest, FlippedByteInTheLastRecord) { ExpectFlipsDetected(4); }
TEST(JournalTest, FlippedByteInAMiddleRecordDropsItAndAllAfter) { ExpectFlipsDetected(2); }

TEST(JournalTest, NonJournalFileIsDataLossAndLeftUntouched) {
  TempDir dir;
  for (const std::string& content :
       {std::string("this is somebody's notes file, not a journal\n"), std::string("abc"),
        std::string("CLSJRNL2") + std::string(40, 'x')}) {
    SCOPED_TRACE(content);
    const std::string path = dir.path() + "/notes.txt";
    WriteFile(path, content);
    JournalReplay replay;
    auto journal = Journal::Open(path, &replay);
    ASSERT_FALSE(journal.ok());
    EXPECT_EQ(journal.status().code(), absl::StatusCode::kDataLoss) << journal.status();
    EXPECT_THAT(std::string(journal.status().message()), HasSubstr(path));
    EXPECT_EQ(ReadFile(path), content);
  }
}

// A crash while creating the journal can leave part of its 8-byte header: nothing was
// recorded yet, so it starts afresh (with a warning), unlike a foreign file.
TEST(JournalTest, TornFileHeaderStartsAfresh) {
  TempDir dir;
  const std::string path = dir.path() + "/journal";
  WriteFile(path, "CLSJ");
  {
    JournalReplay replay;
    auto journal = Journal::Open(path, &replay);
    ASSERT_TRUE(journal.ok()) << journal.status();
    EXPECT_THAT(replay.records, IsEmpty());
    EXPECT_THAT(replay.warning, HasSubstr(path));
    EXPECT_EQ(ReadFile(path), "CLSJRNL1");
    ASSERT_TRUE((*journal)->Append("one").ok());
  }
  JournalReplay replay;
  auto journal = Journal::Open(path, &replay);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_THAT(replay.records, ElementsAre("one"));
}

// Opens the journal in a forked child and returns its exit status: 0 when Open's result
// had the expected code (and named the path), 1 otherwise.
int OpenInChild(const std::string& path, absl::StatusCode expected) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    JournalReplay replay;
    auto journal = Journal::Open(path, &replay);
    const bool ok = journal.status().code() == expected &&
                    (journal.ok() || journal.status().message().find(path) != std::string::npos);
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(JournalTest, SecondProcessIsRefusedWhileLocked) {
  TempDir dir;
  const std::string path = dir.path() + "/journal";
  {
    JournalReplay replay;
    auto journal = Journal::Open(path, &replay);
    ASSERT_TRUE(journal.ok()) << journal.status();
    ASSERT_TRUE((*journal)->Append("mine").ok());
    EXPECT_EQ(OpenInChild(path, absl::StatusCode::kFailedPrecondition), 0)
        << "a second coordinator must be refused while the first holds the journal";
    // The refused Open must not have disturbed the file or our lock.
    ASSERT_TRUE((*journal)->Append("still mine").ok());
    EXPECT_EQ(OpenInChild(path, absl::StatusCode::kFailedPrecondition), 0);
  }
  EXPECT_EQ(OpenInChild(path, absl::StatusCode::kOk), 0) << "closing releases the lock";
  JournalReplay replay;
  auto journal = Journal::Open(path, &replay);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_THAT(replay.records, ElementsAre("mine", "still mine"));
}

TEST(JournalTest, OversizedPayloadIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/journal";
  JournalReplay replay;
  auto journal = Journal::Open(path, &replay);
  ASSERT_TRUE(journal.ok()) << journal.status();
  const absl::Status s = (*journal)->Append(std::string((size_t{64} << 20) + 1, 'x'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(FileSize(path), kFileHeader);
  EXPECT_TRUE((*journal)->Append(std::string(size_t{64} << 20, 'y')).ok()) << "the limit itself";
}

TEST(JournalTest, MissingDirectoryNamesThePath) {
  TempDir dir;
  const std::string path = dir.path() + "/no/such/dir/journal";
  JournalReplay replay;
  auto journal = Journal::Open(path, &replay);
  ASSERT_FALSE(journal.ok());
  EXPECT_EQ(journal.status().code(), absl::StatusCode::kNotFound) << journal.status();
  EXPECT_THAT(std::string(journal.status().message()), HasSubstr(path));
}

// A tmpfs of 64 KiB mounted for the test and detached when it ends.
class TinyTmpfs {
 public:
  explicit TinyTmpfs(const std::string& dir) : dir_(dir) {
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=64k") != 0) {
      error_ = absl::StrCat("mount -t tmpfs -o size=64k on ", dir, ": ", std::strerror(errno));
    }
  }
  ~TinyTmpfs() {
    if (error_.empty()) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  std::string error_;
};

TEST(JournalTest, FullDiskFailsTheAppendAndKeepsEveryRecordThatSucceeded) {
  TempDir dir;
  TinyTmpfs fs(dir.path());
  if (!fs.error().empty()) GTEST_SKIP() << "needs root to mount a tmpfs: " << fs.error();
  const std::string path = dir.path() + "/journal";
  std::vector<std::string> succeeded;
  absl::Status failure;
  {
    JournalReplay replay;
    auto journal = Journal::Open(path, &replay);
    ASSERT_TRUE(journal.ok()) << journal.status();
    // 1500 bytes do not divide a 4 KiB page, so the failing write is a partial one.
    for (int i = 0; i < 100 && failure.ok(); ++i) {
      const std::string p = Payload(i, 1500);
      const int64_t before = (*journal)->size_bytes();
      failure = (*journal)->Append(p);
      if (failure.ok()) {
        succeeded.push_back(p);
      } else {
        EXPECT_EQ((*journal)->size_bytes(), before);
        EXPECT_EQ(FileSize(path), before) << "the partial record is taken back";
      }
    }
    ASSERT_FALSE(failure.ok()) << "64 KiB never filled up";
    EXPECT_EQ(failure.code(), absl::StatusCode::kResourceExhausted) << failure;
    EXPECT_THAT(std::string(failure.message()), HasSubstr(path));
    EXPECT_THAT(std::string(failure.message()), HasSubstr("No space left"));
    EXPECT_GT(succeeded.size(), 10u);
    // Still full: a second try fails the same way and leaves the file alone.
    const int64_t before = (*journal)->size_bytes();
    EXPECT_FALSE((*journal)->Append(Payload(999, 1500)).ok());
    EXPECT_EQ(FileSize(path), before);
  }
  JournalReplay replay;
  auto journal = Journal::Open(path, &replay);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_THAT(replay.records, ElementsAreArray(succeeded));
  EXPECT_EQ(replay.warning, "") << "a failed append leaves nothing to recover";
}

}  // namespace
}  // namespace colossus::launcher
