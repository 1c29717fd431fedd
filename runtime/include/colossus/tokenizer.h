// Tokenizers: text <-> token ids, for preparing shards and for printing samples.
//
//   "byte"         ByteTokenizer: vocabulary 256, token = byte; exact on any bytes.
//   "PATH.model"   SentencePieceTokenizer: a SentencePiece model (BPE with byte
//                  fallback when made by TrainSentencePiece), through libsentencepiece.
//
// A dataset directory written by `colossus-data encode` records its tokenizer in
// tokenizer.json: {"tokenizer": "<spec>", "vocab_size": <n>}.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colossus {

// Thread safety: implementations are immutable after construction; every method is
// const and safe to call concurrently.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids are in [0, vocab_size()).
  virtual int vocab_size() const = 0;
  virtual std::vector<int> Encode(std::string_view text) const = 0;
  // Ids outside [0, vocab_size()) decode to U+FFFD (a model sampling from a padded
  // vocabulary must not crash the printer).
  virtual std::string Decode(const int* ids, size_t n) const = 0;
  std::string Decode(const std::vector<int>& ids) const { return Decode(ids.data(), ids.size()); }
  // The spec LoadTokenizer accepts to build this tokenizer again: "byte" or the path.
  virtual std::string name() const = 0;
};

// Bytes are tokens: Decode(Encode(s)) == s for every byte string.
class ByteTokenizer : public Tokenizer {
 public:
  using Tokenizer::Decode;
  int vocab_size() const override { return 256; }
  std::vector<int> Encode(std::string_view text) const override;
  std::string Decode(const int* ids, size_t n) const override;
  std::string name() const override { return "byte"; }
};

// A SentencePiece model. Decode(Encode(s)) == s for valid UTF-8 when the model keeps
// text as is (TrainSentencePiece's models do: identity normalisation, no dummy prefix,
// whitespace kept, byte fallback); invalid UTF-8 is encoded as U+FFFD.
class SentencePieceTokenizer : public Tokenizer {
 public:
  using Tokenizer::Decode;
  // NotFound naming the file if it does not exist; InvalidArgument naming it if it is
  // not a SentencePiece model.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(const std::string& path);
  ~SentencePieceTokenizer() override;

  int vocab_size() const override;
  std::vector<int> Encode(std::string_view text) const override;
  std::string Decode(const int* ids, size_t n) const override;
  std::string name() const override { return path_; }

 private:
  struct Impl;  // holds the sentencepiece::SentencePieceProcessor
  SentencePieceTokenizer(std::string path, std::unique_ptr<Impl> impl);

  std::string path_;
  std::unique_ptr<Impl> impl_;
};

// "byte" or a path to a SentencePiece .model file. Errors name the spec / file.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& spec);

// Trains a SentencePiece BPE model on the text files `inputs` (one sentence per line)
// and writes `model_prefix`.model and `model_prefix`.vocab. The model keeps text
// exactly (identity normalisation, whitespace kept, no dummy prefix) and has byte
// fallback, so any text encodes without <unk>. vocab_size counts the 256 byte pieces
// and <unk>, <s>, </s>: it must exceed 259 plus the corpus's distinct characters.
// Errors name the input file that cannot be read, or carry SentencePiece's message.
// Not thread-safe with other TrainSentencePiece calls (libsentencepiece's trainer
// uses process-wide state).
absl::Status TrainSentencePiece(const std::vector<std::string>& inputs,
                                const std::string& model_prefix, int vocab_size);

// The contents of a dataset's tokenizer.json.
struct TokenizerInfo {
  std::string spec;  // as LoadTokenizer takes it
  int vocab_size = 0;
};
// Writes {"tokenizer": spec, "vocab_size": n} to `path` (atomically, via path.tmp).
absl::Status WriteTokenizerInfo(const std::string& path, const TokenizerInfo& info);
// Reads it back; a relative model path in it is taken relative to the file's directory.
// Errors name the file and the missing or mistyped field.
absl::StatusOr<TokenizerInfo> ReadTokenizerInfo(const std::string& path);

}  // namespace colossus
