// Tokenizers: exact byte round trips, a SentencePiece model trained here on the demo
// corpus, loading errors that name the file, and tokenizer.json.
#include "colossus/tokenizer.h"

#include <stdlib.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string MakeTempDir(const char* prefix) {
  std::string tmpl = ::testing::TempDir() + prefix + "XXXXXX";
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
  return tmpl;
}

void RemoveDir(const std::string& dir) { std::system(("rm -rf '" + dir + "'").c_str()); }

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(TokenizerTest, ByteRoundTripsEveryByte) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 256);
  EXPECT_EQ(tok.name(), "byte");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  all += std::string("\x00\xff\x00", 3);
  std::vector<int> ids = tok.Encode(all);
  ASSERT_EQ(ids.size(), all.size());
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(ids[256], 0x00);
  EXPECT_EQ(ids[257], 0xFF);
  EXPECT_EQ(tok.Decode(ids), all);

  std::mt19937 rng(1);
  std::string random(10000, '\0');
  for (char& c : random) c = static_cast<char>(rng() & 0xFF);
  EXPECT_EQ(tok.Decode(tok.Encode(random)), random);
  EXPECT_TRUE(tok.Encode("").empty());
}

TEST(TokenizerTest, ByteDecodeMarksInvalidIds) {
  ByteTokenizer tok;
  const std::vector<int> ids = {'a', 256, -1, 'b'};
  EXPECT_EQ(tok.Decode(ids), "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
}

TEST(TokenizerTest, LoadTokenizerByteAndErrors) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> byte = LoadTokenizer("byte");
  ASSERT_TRUE(byte.ok()) << byte.status();
  EXPECT_EQ((*byte)->vocab_size(), 256);

  absl::StatusOr<std::unique_ptr<Tokenizer>> missing = LoadTokenizer("/no/such/tok.model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/no/such/tok.model"));

  const std::string dir = MakeTempDir("colossus_tok_");
  const std::string garbage = dir + "/garbage.model";
  std::ofstream(garbage) << "this is not a protobuf";
  absl::StatusOr<std::unique_ptr<Tokenizer>> bad = LoadTokenizer(garbage);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr(garbage));
  RemoveDir(dir);

  EXPECT_FALSE(LoadTokenizer("").ok());
}

TEST(TokenizerTest, TrainSentencePieceErrorsNameTheInput) {
  const std::string dir = MakeTempDir("colossus_tok_");
  absl::Status s = TrainSentencePiece({dir + "/missing.txt"}, dir + "/m", 512);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(dir + "/missing.txt"));

  std::ofstream(dir + "/t.txt") << "some text\n";
  s = TrainSentencePiece({dir + "/t.txt"}, dir + "/m", 100);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("vocab_size 100"));
  RemoveDir(dir);
}

// One model for the suite: trained once on ~300 KB of the demo corpus (well under a
// second; the test's budget is 10 s).
class TokenizerSentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("colossus_spm_"));
    corpus_ = new std::string(
        ReadFile(std::string(COLOSSUS_SOURCE_DIR) + "/examples/data/kjv-pentateuch.txt")
            .substr(0, 300000));
    ASSERT_GT(corpus_->size(), 100000u) << "demo corpus missing";
    std::ofstream(*dir_ + "/corpus.txt", std::ios::binary) << *corpus_;
    train_status_ = new absl::Status(
        TrainSentencePiece({*dir_ + "/corpus.txt"}, *dir_ + "/kjv", 512));
  }
  static void TearDownTestSuite() {
    RemoveDir(*dir_);
    delete dir_;
    delete corpus_;
    delete train_status_;
  }
  void SetUp() override { ASSERT_TRUE(train_status_->ok()) << *train_status_; }

  static std::string ModelPath() { return *dir_ + "/kjv.model"; }

  static std::string* dir_;
  static std::string* corpus_;
  static absl::Status* train_status_;
};
std::string* TokenizerSentencePieceTest::dir_ = nullptr;
std::string* TokenizerSentencePieceTest::corpus_ = nullptr;
absl::Status* TokenizerSentencePieceTest::train_status_ = nullptr;

TEST_F(TokenizerSentencePieceTest, TrainsAModelOfTheRequestedSize) {
  std::ifstream vocab(*dir_ + "/kjv.vocab");
  EXPECT_TRUE(vocab.is_open()) << "the .vocab file is written beside the .model";
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(ModelPath());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 512);
  EXPECT_EQ((*tok)->name(), ModelPath());
}

TEST_F(TokenizerSentencePieceTest, RoundTripsTextExactly) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(ModelPath());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::vector<std::string> texts = {
      corpus_->substr(100000, 20000),
      "In the beginning God created the heaven and the earth.",
      "  leading spaces, double  spaces,\ttabs\nand\n\nnewlines \n",
      "digits 1234567890 and punctuation: ;!?()[]{}<>\"'",
      "unseen characters: na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 \xE6\x97\xA5\xE6\x9C\xAC "
      "\xF0\x9F\x99\x82 (byte fallback)",
      "",
  };
  for (const std::string& text : texts) {
    std::vector<int> ids = (*tok)->Encode(text);
    for (int id : ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, 512);
    }
    EXPECT_EQ((*tok)->Decode(ids), text);
  }
  // BPE compresses English: the 20 KB slice takes well under one token per 2 bytes.
  EXPECT_LT((*tok)->Encode(texts[0]).size(), texts[0].size() / 2);
}

TEST_F(TokenizerSentencePieceTest, EncodingIsDeterministicAndDecodeMarksInvalidIds) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(ModelPath());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = "And God said, Let there be light: and there was light.";
  std::vector<int> ids = (*tok)->Encode(text);
  EXPECT_EQ(ids, (*tok)->Encode(text));
  std::vector<int> with_bad = ids;
  with_bad.insert(with_bad.begin() + 1, 512);
  with_bad.push_back(-3);
  std::string decoded = (*tok)->Decode(with_bad);
  EXPECT_THAT(decoded, HasSubstr("\xEF\xBF\xBD"));
  EXPECT_EQ(decoded.size(), text.size() + 2 * 3);
}

TEST(TokenizerInfoTest, RoundTripsAndResolvesRelativeModelPaths) {
  const std::string dir = MakeTempDir("colossus_tokinfo_");
  ASSERT_TRUE(WriteTokenizerInfo(dir + "/tokenizer.json", {"byte", 256}).ok());
  absl::StatusOr<TokenizerInfo> info = ReadTokenizerInfo(dir + "/tokenizer.json");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->spec, "byte");
  EXPECT_EQ(info->vocab_size, 256);

  std::ofstream(dir + "/rel.json") << R"({"tokenizer": "spm.model", "vocab_size": 512})";
  info = ReadTokenizerInfo(dir + "/rel.json");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->spec, dir + "/spm.model");

  std::ofstream(dir + "/bad.json") << R"({"tokenizer": "byte"})";
  absl::StatusOr<TokenizerInfo> bad = ReadTokenizerInfo(dir + "/bad.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), AllOf(HasSubstr(dir + "/bad.json"), HasSubstr("vocab_size")));

  std::ofstream(dir + "/junk.json") << "{not json";
  EXPECT_THAT(ReadTokenizerInfo(dir + "/junk.json").status().message(),
              HasSubstr(dir + "/junk.json"));
  EXPECT_EQ(ReadTokenizerInfo(dir + "/none.json").status().code(), absl::StatusCode::kNotFound);
  RemoveDir(dir);
}

}  // namespace
}  // namespace colossus
