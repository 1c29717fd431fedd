// colossus-data: text files -> llm.c token shards, SentencePiece training, shard
// inspection.
//
//   colossus-data encode --tokenizer byte|PATH.model --output DIR [--val-fraction 0.1]
//                        [--shard-tokens 100000000] [--overwrite] FILES...
//   colossus-data train-spm --vocab-size N --model-prefix P FILES...
//   colossus-data inspect [--vocab-size N] [--tokenizer SPEC] [--show 32] FILE.bin
//
// Exit status: 0 success, 2 usage error, 1 data error (the message, naming the file,
// goes to stderr).
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/data.h"
#include "colossus/tokenizer.h"

namespace colossus {
namespace {

constexpr int kExitDataError = 1;
constexpr int kExitUsage = 2;

int Fail(const absl::Status& s) {
  std::cerr << "colossus-data: " << s.message() << "\n";
  return kExitDataError;
}

std::vector<std::string> Glob(const std::string& pattern) {
  glob_t g = {};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) out.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  globfree(&g);
  return out;
}

// Buffers tokens of one split and writes PREFIX_000000.bin, PREFIX_000001.bin, ... of
// shard_tokens tokens each (the last one shorter).
class ShardSink {
 public:
  ShardSink(std::string dir, std::string prefix, int64_t shard_tokens, int vocab_size)
      : dir_(std::move(dir)), prefix_(std::move(prefix)), shard_tokens_(shard_tokens),
        vocab_size_(vocab_size) {}

  absl::Status Add(const std::vector<int>& ids) {
    for (int id : ids) {
      // The tokenizer promises ids < vocab_size <= 65536; uint16 holds them.
      buffer_.push_back(static_cast<uint16_t>(id));
      if (static_cast<int64_t>(buffer_.size()) == shard_tokens_) {
        if (absl::Status s = Flush(); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }

  // Writes the partial last shard; writes one empty shard if the split got no tokens,
  // so that the file a training config names exists.
  absl::Status Finish() {
    if (!buffer_.empty() || written_.empty()) return Flush();
    return absl::OkStatus();
  }

  const std::vector<std::string>& written() const { return written_; }
  int64_t total_tokens() const { return total_; }

 private:
  absl::Status Flush() {
    std::string path = absl::StrFormat("%s/%s_%06d.bin", dir_, prefix_, written_.size());
    const int64_t n = static_cast<int64_t>(buffer_.size());
    if (absl::Status s = WriteTokenShard(path, buffer_.data(), n, vocab_size_); !s.ok()) return s;
    std::cout << "wrote " << path << ": " << n << " tokens\n";
    written_.push_back(path);
    total_ += n;
    buffer_.clear();
    return absl::OkStatus();
  }

  std::string dir_, prefix_;
  int64_t shard_tokens_;
  int vocab_size_;
  std::vector<uint16_t> buffer_;
  std::vector<std::string> written_;
  int64_t total_ = 0;
};

struct EncodeOptions {
  std::string tokenizer;
  std::string output;
  double val_fraction = 0.1;
  int64_t shard_tokens = 100'000'000;
  bool overwrite = false;
  std::vector<std::string> files;
};

// Reads FILES as one byte stream, in pieces that end at a line end, and sends each piece
// to the train split until the first line start at or after byte `split_at`, the rest to
// val. Cutting at line ends keeps a tokenizer from seeing a word split in two.
class SplitEncoder {
 public:
  SplitEncoder(const Tokenizer& tok, int64_t split_at, ShardSink* train, ShardSink* val)
      : tok_(tok), split_at_(split_at), train_(train), val_(val) {}

  absl::Status EncodeFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in.is_open()) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
    std::string carry;
    std::vector<char> block(kBlock);
    while (in.read(block.data(), kBlock) || in.gcount() > 0) {
      carry.append(block.data(), static_cast<size_t>(in.gcount()));
      size_t cut = carry.rfind('\n');
      if (cut != std::string::npos) {
        ++cut;
      } else if (carry.size() >= kMaxLine) {
        // A huge line: cut at a UTF-8 character boundary rather than hold it all.
        cut = carry.size();
        while (cut > 0 && (static_cast<unsigned char>(carry[cut - 1]) & 0xC0) == 0x80) --cut;
        if (cut > 0 && static_cast<unsigned char>(carry[cut - 1]) >= 0xC0) --cut;
        if (cut == 0) cut = carry.size();
      } else {
        continue;
      }
      if (absl::Status s = Piece(std::string_view(carry).substr(0, cut)); !s.ok()) return s;
      carry.erase(0, cut);
    }
    if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
    if (!carry.empty()) {
      if (absl::Status s = Piece(carry); !s.ok()) return s;
    }
    // A file's start is a line start whatever the previous file ended with.
    at_line_start_ = true;
    return absl::OkStatus();
  }

 private:
  static constexpr size_t kBlock = 1 << 20;
  static constexpr size_t kMaxLine = 16 << 20;

  absl::Status Piece(std::string_view text) {
    const int64_t begin = offset_;
    offset_ += static_cast<int64_t>(text.size());
    bool starts_line = at_line_start_;
    at_line_start_ = !text.empty() && text.back() == '\n';
    if (in_val_) return val_->Add(tok_.Encode(text));
    if (offset_ <= split_at_) {
      // Entirely before the split point (a line starting exactly at split_at_ starts the
      // next piece).
      return train_->Add(tok_.Encode(text));
    }
    // The first line start at or after split_at_ inside this piece, if any.
    size_t i = split_at_ > begin ? static_cast<size_t>(split_at_ - begin) : 0;
    while (i < text.size() && !(i == 0 ? starts_line : text[i - 1] == '\n')) ++i;
    if (i < text.size()) {
      if (absl::Status s = train_->Add(tok_.Encode(text.substr(0, i))); !s.ok()) return s;
      in_val_ = true;
      return val_->Add(tok_.Encode(text.substr(i)));
    }
    return train_->Add(tok_.Encode(text));
  }

  const Tokenizer& tok_;
  const int64_t split_at_;
  ShardSink* train_;
  ShardSink* val_;
  int64_t offset_ = 0;
  bool at_line_start_ = true;
  bool in_val_ = false;
};

int Encode(const EncodeOptions& opt) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(opt.tokenizer);
  if (!tok.ok()) return Fail(tok.status());
  const int vocab = (*tok)->vocab_size();
  if (vocab > kTokenShardMaxVocab) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", opt.tokenizer, " has ", vocab, " tokens; shards hold at most ",
        kTokenShardMaxVocab, " (uint16)")));
  }
  int64_t total_bytes = 0;
  for (const std::string& f : opt.files) {
    struct stat st;
    if (::stat(f.c_str(), &st) != 0) {
      return Fail(absl::NotFoundError(absl::StrCat(f, ": ", std::strerror(errno))));
    }
    if (!S_ISREG(st.st_mode)) return Fail(absl::InvalidArgumentError(f + ": not a regular file"));
    total_bytes += st.st_size;
  }

  std::error_code ec;
  std::filesystem::create_directories(opt.output, ec);
  if (ec) return Fail(absl::InternalError(absl::StrCat(opt.output, ": ", ec.message())));
  // Shards left by an earlier run would be picked up by a glob like train_*.bin.
  std::vector<std::string> old;
  for (const char* pattern : {"/train_*.bin", "/val_*.bin", "/tokenizer.json"}) {
    for (std::string& p : Glob(opt.output + pattern)) old.push_back(std::move(p));
  }
  if (!old.empty() && !opt.overwrite) {
    return Fail(absl::AlreadyExistsError(absl::StrCat(
        opt.output, " already holds a dataset (", old.front(),
        "); pass --overwrite or choose another --output")));
  }

  const int64_t split_at =
      total_bytes - static_cast<int64_t>(static_cast<double>(total_bytes) * opt.val_fraction);
  ShardSink train(opt.output, "train", opt.shard_tokens, vocab);
  ShardSink val(opt.output, "val", opt.shard_tokens, vocab);
  SplitEncoder encoder(**tok, split_at, &train, &val);
  for (const std::string& f : opt.files) {
    if (absl::Status s = encoder.EncodeFile(f); !s.ok()) return Fail(s);
  }
  if (absl::Status s = train.Finish(); !s.ok()) return Fail(s);
  if (opt.val_fraction > 0) {
    if (absl::Status s = val.Finish(); !s.ok()) return Fail(s);
    if (val.total_tokens() == 0) {
      std::cerr << "colossus-data: warning: the validation split is empty (the input has no "
                   "line start in its last "
                << opt.val_fraction * 100 << "%)\n";
    }
  }
  const std::string info_path = opt.output + "/tokenizer.json";
  std::string spec = (*tok)->name();
  if (spec != "byte") spec = std::filesystem::absolute(spec).lexically_normal().string();
  if (absl::Status s = WriteTokenizerInfo(info_path, {spec, vocab}); !s.ok()) return Fail(s);

  std::set<std::string> now(train.written().begin(), train.written().end());
  now.insert(val.written().begin(), val.written().end());
  now.insert(info_path);
  for (const std::string& p : old) {
    if (now.count(p) == 0 && std::remove(p.c_str()) == 0) std::cout << "removed stale " << p << "\n";
  }
  std::cout << "wrote " << info_path << ": tokenizer " << spec << ", vocab_size " << vocab << "\n"
            << "train: " << train.total_tokens() << " tokens in " << train.written().size()
            << " shard(s); val: " << val.total_tokens() << " tokens in " << val.written().size()
            << " shard(s); from " << total_bytes << " bytes of text\n";
  return 0;
}

int TrainSpm(const std::vector<std::string>& files, const std::string& prefix, int vocab) {
  if (absl::Status s = TrainSentencePiece(files, prefix, vocab); !s.ok()) return Fail(s);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(prefix + ".model");
  if (!tok.ok()) return Fail(tok.status());
  std::cout << "wrote " << prefix << ".model and " << prefix << ".vocab: vocab_size "
            << (*tok)->vocab_size() << "\n";
  return 0;
}

// Printable form of decoded text: control bytes escaped, one line.
std::string Escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20 || c == 0x7F) out += absl::StrFormat("\\x%02x", c);
    else out.push_back(static_cast<char>(c));
  }
  return out;
}

int Inspect(const std::string& path, int vocab_flag, std::string tokenizer_spec, int show) {
  absl::StatusOr<TokenShardHeader> h = ReadTokenShardHeader(path);
  if (!h.ok()) return Fail(h.status());
  std::cout << "file        " << path << " (" << h->file_bytes << " bytes)\n"
            << "magic       " << h->magic
            << (h->magic == kTokenShardMagic ? " (llm.c token shard)" : " (WRONG)") << "\n"
            << "version     " << h->version << (h->version == 1 ? " (uint16 tokens)" : "") << "\n"
            << "tokens      " << h->num_tokens << " (header)\n"
            << "vocab_size  " << h->vocab_size << (h->vocab_size == 0 ? " (unknown)" : "") << "\n";
  const int vocab = vocab_flag > 0 ? vocab_flag : h->vocab_size;
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path, vocab);
  if (!shard.ok()) return Fail(shard.status());
  uint16_t max_token = 0;
  for (int64_t i = 0; i < shard->size(); ++i) max_token = std::max(max_token, shard->tokens()[i]);
  std::cout << "max token   " << max_token << "\n";
  const int64_t n = std::min<int64_t>(shard->size(), std::max(show, 0));
  std::vector<int> first(shard->tokens(), shard->tokens() + n);
  std::cout << "first " << n << (n == 1 ? " token " : " tokens") << ":";
  for (int id : first) std::cout << " " << id;
  std::cout << "\n";
  // Decode with the dataset's own tokenizer when one is recorded beside the shard.
  if (tokenizer_spec.empty()) {
    std::string dir = std::filesystem::path(path).parent_path().string();
    absl::StatusOr<TokenizerInfo> info =
        ReadTokenizerInfo((dir.empty() ? std::string(".") : dir) + "/tokenizer.json");
    if (info.ok()) tokenizer_spec = info->spec;
  }
  if (!tokenizer_spec.empty()) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadTokenizer(tokenizer_spec);
    if (!tok.ok()) return Fail(tok.status());
    std::cout << "text        \"" << Escape((*tok)->Decode(first)) << "\"\n";
  }
  std::cout << "valid       yes" << (vocab > 0 ? absl::StrCat(" (tokens < ", vocab, ")") : "")
            << "\n";
  return 0;
}

int Main(int argc, char** argv) {
  CLI::App app{"colossus-data: text -> llm.c token shards (byte-level or SentencePiece BPE)"};
  app.require_subcommand(1);

  EncodeOptions enc;
  CLI::App* encode = app.add_subcommand("encode", "tokenize text files into train/val shards");
  encode->add_option("--tokenizer", enc.tokenizer, "'byte' or a SentencePiece .model file")
      ->required();
  encode->add_option("--output", enc.output, "output directory")->required();
  encode->add_option("--val-fraction", enc.val_fraction,
                     "last fraction of the text (by bytes, from a line start) for val.bin")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            double f = std::strtod(v.c_str(), nullptr);
            return f >= 0.0 && f < 1.0 ? "" : "must be in [0, 1)";
          },
          "in [0, 1)"));
  encode->add_option("--shard-tokens", enc.shard_tokens, "tokens per shard")
      ->check(CLI::Range(int64_t{1}, int64_t{INT32_MAX}));
  encode->add_flag("--overwrite", enc.overwrite, "replace a dataset already in --output");
  encode->add_option("files", enc.files, "text files, read in order")->required();

  std::vector<std::string> spm_files;
  std::string spm_prefix;
  int spm_vocab = 0;
  CLI::App* spm = app.add_subcommand("train-spm", "train a SentencePiece BPE model");
  spm->add_option("--vocab-size", spm_vocab, "vocabulary size (> 259)")->required();
  spm->add_option("--model-prefix", spm_prefix, "writes PREFIX.model and PREFIX.vocab")
      ->required();
  spm->add_option("files", spm_files, "training text files")->required();

  std::string inspect_path, inspect_tokenizer;
  int inspect_vocab = 0, inspect_show = 32;
  CLI::App* inspect = app.add_subcommand("inspect", "print and validate a token shard");
  inspect->add_option("file", inspect_path, "a .bin token shard")->required();
  inspect->add_option("--vocab-size", inspect_vocab,
                      "check tokens against this (default: the header's)");
  inspect->add_option("--tokenizer", inspect_tokenizer,
                      "decode the first tokens (default: tokenizer.json beside the file)");
  inspect->add_option("--show", inspect_show, "how many leading tokens to print");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message and usage
    return kExitUsage;
  }
  if (*encode) return Encode(enc);
  if (*spm) return TrainSpm(spm_files, spm_prefix, spm_vocab);
  if (*inspect) return Inspect(inspect_path, inspect_vocab, inspect_tokenizer, inspect_show);
  return kExitUsage;
}

}  // namespace
}  // namespace colossus

int main(int argc, char** argv) { return colossus::Main(argc, argv); }
