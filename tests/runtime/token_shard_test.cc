// Token shards: round trips, llm.c compatibility, and a clear error (file and byte
// offset, never a crash) for every way a shard on disk can be wrong.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "colossus/data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// A fresh directory per test, removed (with its files) at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "colossus_shard_XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr) << std::strerror(errno);
    path_ = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::vector<uint16_t> RandomTokens(int64_t n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, vocab - 1);
  std::vector<uint16_t> t(n);
  for (auto& x : t) x = static_cast<uint16_t>(dist(rng));
  return t;
}

// Overwrites the int32 at `offset` of `path` in place.
void PokeInt32(const std::string& path, int64_t offset, int32_t value) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.is_open()) << path;
  f.seekp(offset);
  f.write(reinterpret_cast<const char*>(&value), 4);
}

void PokeUint16(const std::string& path, int64_t offset, uint16_t value) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.is_open()) << path;
  f.seekp(offset);
  f.write(reinterpret_cast<const char*>(&value), 2);
}

void Truncate(const std::string& path, int64_t bytes) {
  ASSERT_EQ(::truncate(path.c_str(), bytes), 0) << path << ": " << std::strerror(errno);
}

TEST(TokenShardTest, RoundTripsRandomTokensOfManySizes) {
  TempDir dir;
  for (int64_t n : {0, 1, 2, 3, 1000, 100003}) {
    SCOPED_TRACE(n);
    const std::string path = dir.File("shard_" + std::to_string(n) + ".bin");
    std::vector<uint16_t> tokens = RandomTokens(n, 50257, static_cast<uint32_t>(n) + 7);
    ASSERT_TRUE(WriteTokenShard(path, tokens.data(), n, 50257).ok());
    EXPECT_FALSE(Exists(path + ".tmp"));

    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, kTokenShardHeaderBytes + 2 * n);

    absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 50257);
    ASSERT_TRUE(shard.ok()) << shard.status();
    EXPECT_EQ(shard->size(), n);
    EXPECT_EQ(shard->path(), path);
    EXPECT_EQ(shard->header_vocab_size(), 50257);
    std::vector<uint16_t> back(shard->tokens(), shard->tokens() + shard->size());
    EXPECT_EQ(back, tokens);
  }
}

TEST(TokenShardTest, HeaderIsLlmcLayout) {
  TempDir dir;
  const std::string path = dir.File("a.bin");
  const std::vector<uint16_t> tokens = {5, 6, 7};
  ASSERT_TRUE(WriteTokenShard(path, tokens.data(), 3, 256).ok());
  std::ifstream f(path, std::ios::binary);
  std::vector<int32_t> header(256);
  f.read(reinterpret_cast<char*>(header.data()), 1024);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 3);
  EXPECT_EQ(header[3], 256);
  for (int i = 4; i < 256; ++i) EXPECT_EQ(header[i], 0) << "header[" << i << "]";

  absl::StatusOr<TokenShardHeader> h = ReadTokenShardHeader(path);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->magic, kTokenShardMagic);
  EXPECT_EQ(h->num_tokens, 3);
  EXPECT_EQ(h->vocab_size, 256);
  EXPECT_EQ(h->file_bytes, 1024 + 6);
}

TEST(TokenShardTest, ReadsLlmcShardWithUnknownVocab) {
  // llm.c's writers leave header[3] zero; such a shard opens for any vocabulary, and the
  // range check still applies to each token.
  TempDir dir;
  const std::string path = dir.File("llmc.bin");
  std::vector<int32_t> header(256, 0);
  header[0] = 20240520;
  header[1] = 1;
  header[2] = 4;
  const std::vector<uint16_t> tokens = {50256, 0, 1, 50000};
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), 1024);
    f.write(reinterpret_cast<const char*>(tokens.data()), 8);
  }
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 50257);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->header_vocab_size(), 0);
  EXPECT_EQ(std::vector<uint16_t>(shard->tokens(), shard->tokens() + 4), tokens);

  absl::StatusOr<TokenShard> small = TokenShard::Open(path, 50000);
  ASSERT_FALSE(small.ok());
  EXPECT_THAT(small.status().message(),
              AllOf(HasSubstr(path), HasSubstr("token 50256 at byte offset 1024 (index 0)"),
                    HasSubstr(">= vocab_size 50000")));
}

TEST(TokenShardTest, FileShorterThanHeaderNamesFileAndSize) {
  TempDir dir;
  const std::string path = dir.File("short.bin");
  std::ofstream(path, std::ios::binary) << std::string(100, '\0');
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 256);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(shard.status().message(),
              AllOf(HasSubstr(path), HasSubstr("100 bytes"), HasSubstr("1024-byte header")));

  std::ofstream(dir.File("empty.bin"), std::ios::binary);  // zero bytes
  EXPECT_THAT(TokenShard::Open(dir.File("empty.bin"), 256).status().message(),
              HasSubstr("0 bytes"));
}

TEST(TokenShardTest, WrongMagicPrintsExpectedAndFound) {
  TempDir dir;
  const std::string path = dir.File("magic.bin");
  std::vector<uint16_t> tokens = RandomTokens(10, 256, 1);
  ASSERT_TRUE(WriteTokenShard(path, tokens.data(), 10, 256).ok());
  PokeInt32(path, 0, 12345);
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 256);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(shard.status().message(),
              AllOf(HasSubstr(path), HasSubstr("byte offset 0"), HasSubstr("expected 20240520"),
                    HasSubstr("found 12345")));
}

TEST(TokenShardTest, UnsupportedVersionNamesIt) {
  TempDir dir;
  const std::string path = dir.File("v2.bin");
  std::vector<uint16_t> tokens = RandomTokens(10, 256, 2);
  ASSERT_TRUE(WriteTokenShard(path, tokens.data(), 10, 256).ok());
  PokeInt32(path, 4, 2);  // llm.c's version 2 holds uint32 tokens
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 256);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(),
              AllOf(HasSubstr(path), HasSubstr("unsupported version 2"),
                    HasSubstr("byte offset 4")));
}

TEST(TokenShardTest, TruncatedShardSaysHowManyBytesAreMissing) {
  TempDir dir;
  const std::string path = dir.File("trunc.bin");
  std::vector<uint16_t> tokens = RandomTokens(1000, 256, 3);
  ASSERT_TRUE(WriteTokenShard(path, tokens.data(), 1000, 256).ok());
  Truncate(path, 1024 + 1500);
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 256);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(shard.status().message(),
              AllOf(HasSubstr(path), HasSubstr("header says 1000 tokens"),
                    HasSubstr("expected 2000 bytes of tokens at offset 1024, file has 1500"),
                    HasSubstr("truncated")));

  // An odd byte count (a torn last token) is caught the same way.
  Truncate(path, 1024 + 1999);
  EXPECT_THAT(TokenShard::Open(path, 256).status().message(), HasSubstr("file has 1999"));
}

TEST(TokenShardTest, HeaderCountBelowFileSizeIsAnError) {
  TempDir dir;
  const std::string path = dir.File("count.bin");
  std::vector<uint16_t> tokens = RandomTokens(100, 256, 4);
  ASSERT_TRUE(WriteTokenShard(path, tokens.data(), 100, 256).ok());
  PokeInt32(path, 8, 60);
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 256);
  ASSERT_FALSE(shard.ok());
  EXPECT_THAT(shard.status().message(),
              AllOf(HasSubstr(path), HasSubstr("expected 120 bytes of tokens at offset 1024"),
                    HasSubstr("file has 200"), HasSubstr("trailing")));

  PokeInt32(path, 8, -5);
  EXPECT_THAT(TokenShard::Open(path, 256).status().message(),
              AllOf(HasSubstr(path), HasSubstr("negative token count -5"),
                    HasSubstr("byte offset 8")));
}

TEST(TokenShardTest, TokenOutOfVocabularyNamesByteOffsetAndIndex) {
  TempDir dir;
  const std::string path = dir.File("oov.bin");
  std::vector<uint16_t> tokens = RandomTokens(200, 50257, 5);
  ASSERT_TRUE(WriteTokenShard(path, tokens.data(), 200, 0).ok());  // vocab unknown
  PokeUint16(path, 1024 + 2 * 105, 60000);
  PokeUint16(path, 1024 + 2 * 150, 65535);  // a later offender: the first one is named
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 50257);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(shard.status().message(),
              AllOf(HasSubstr(path),
                    HasSubstr("token 60000 at byte offset 1234 (index 105) >= vocab_size 50257")));

  // vocab_size 0 skips the range check (for tools that only look at the layout).
  EXPECT_TRUE(TokenShard::Open(path, 0).ok());
}

TEST(TokenShardTest, VocabularyRecordedInHeaderMustMatchTheReader) {
  TempDir dir;
  const std::string path = dir.File("bytes.bin");
  std::vector<uint16_t> tokens = RandomTokens(50, 256, 6);
  ASSERT_TRUE(WriteTokenShard(path, tokens.data(), 50, 256).ok());
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 50257);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shard.status().message(),
              AllOf(HasSubstr(path), HasSubstr("written for vocab_size 256"),
                    HasSubstr("expects 50257")));
}

TEST(TokenShardTest, MissingFileAndDirectoryAreErrorsNamingThePath) {
  TempDir dir;
  absl::StatusOr<TokenShard> missing = TokenShard::Open(dir.File("nope.bin"), 256);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir.File("nope.bin")));

  absl::StatusOr<TokenShard> directory = TokenShard::Open(dir.path(), 256);
  ASSERT_FALSE(directory.ok());
  EXPECT_THAT(directory.status().message(),
              AllOf(HasSubstr(dir.path()), HasSubstr("not a regular file")));
}

TEST(TokenShardTest, WriteIntoMissingDirectoryFailsAndLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.File("no/such/dir/x.bin");
  std::vector<uint16_t> tokens = RandomTokens(10, 256, 7);
  absl::Status s = WriteTokenShard(path, tokens.data(), 10, 256);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(path));
  EXPECT_FALSE(Exists(path));
  EXPECT_FALSE(Exists(path + ".tmp"));
}

// Lowers the file-size limit so write(2) fails part-way with EFBIG, as on a full disk,
// and restores it (and SIGXFSZ's disposition) on scope exit.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &old_);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);  // else the kernel kills the process
    struct rlimit lim = old_;
    lim.rlim_cur = bytes;
    EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }

 private:
  struct rlimit old_;
  sighandler_t old_handler_;
};

TEST(TokenShardTest, FailedWriteKeepsThePreviousShardAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.File("x.bin");
  std::vector<uint16_t> before = RandomTokens(100, 256, 8);
  ASSERT_TRUE(WriteTokenShard(path, before.data(), 100, 256).ok());

  std::vector<uint16_t> big = RandomTokens(100000, 256, 9);
  absl::Status s;
  {
    FileSizeLimit limit(64 * 1024);  // the header fits, the tokens do not
    s = WriteTokenShard(path, big.data(), 100000, 256);
  }
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr(path + ".tmp"));
  EXPECT_FALSE(Exists(path + ".tmp"));

  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, 256);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(std::vector<uint16_t>(shard->tokens(), shard->tokens() + shard->size()), before);
}

TEST(TokenShardTest, WriterRefusesWhatTheReaderWouldRefuse) {
  TempDir dir;
  const std::string path = dir.File("bad.bin");
  std::vector<uint16_t> tokens = {1, 2, 300};
  absl::Status s = WriteTokenShard(path, tokens.data(), 3, 256);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr(path), HasSubstr("token 300 (index 2)")));
  EXPECT_FALSE(Exists(path));

  EXPECT_EQ(WriteTokenShard(path, tokens.data(), -1, 256).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteTokenShard(path, tokens.data(), 3, 70000).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteTokenShard(path, nullptr, 3, 256).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Exists(path));
}

TEST(TokenShardTest, MovedShardKeepsItsMapping) {
  TempDir dir;
  const std::string path = dir.File("m.bin");
  std::vector<uint16_t> tokens = RandomTokens(1000, 256, 10);
  ASSERT_TRUE(WriteTokenShard(path, tokens.data(), 1000, 256).ok());
  absl::StatusOr<TokenShard> opened = TokenShard::Open(path, 256);
  ASSERT_TRUE(opened.ok());
  TokenShard a = *std::move(opened);
  TokenShard b = std::move(a);
  EXPECT_EQ(a.size(), 0);
  EXPECT_EQ(a.tokens(), nullptr);
  std::vector<TokenShard> many;
  for (int i = 0; i < 3; ++i) many.push_back(*TokenShard::Open(path, 256));
  b = std::move(many[1]);  // releases b's old mapping, takes many[1]'s
  EXPECT_EQ(std::vector<uint16_t>(b.tokens(), b.tokens() + b.size()), tokens);
  EXPECT_EQ(std::vector<uint16_t>(many[2].tokens(), many[2].tokens() + 1000), tokens);
}

}  // namespace
}  // namespace colossus
