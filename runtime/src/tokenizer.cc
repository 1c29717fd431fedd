// Tokenizers: byte-level, SentencePiece (load and train), and tokenizer.json.
#include "colossus/tokenizer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "nlohmann/json.hpp"

// Debian's sentencepiece headers declare `namespace absl { using std::string_view; }`,
// which collides with abseil's own class absl::string_view (Debian builds abseil with
// ABSL_OPTION_USE_STD_STRING_VIEW 0). Renaming the namespace while those two headers
// are read keeps both in one translation unit; the library's symbols are mangled with
// std::string_view, so linking is unaffected.
#define absl colossus_sentencepiece_absl
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#undef absl

namespace colossus {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Feeds SentencePiece's trainer our files line by line, so a missing file is reported by
// name and paths may contain commas (the trainer's own --input splits on them).
class FileLineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit FileLineIterator(std::vector<std::string> paths) : paths_(std::move(paths)) {
    Next();
  }
  bool done() const override { return done_; }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return status_; }

  void Next() override {
    while (true) {
      if (!pending_.empty()) {
        // The trainer drops sentences longer than max_sentence_length (4192 bytes);
        // cut long lines (at a UTF-8 character boundary) instead of losing them.
        size_t cut = pending_.size() <= kMaxPiece ? pending_.size() : kMaxPiece;
        while (cut < pending_.size() && (static_cast<unsigned char>(pending_[cut]) & 0xC0) == 0x80) {
          --cut;
        }
        value_ = pending_.substr(0, cut);
        pending_.erase(0, cut);
        return;
      }
      // An empty line leaves pending_ empty and the loop reads on.
      if (file_.is_open() && std::getline(file_, pending_)) continue;
      if (file_.is_open()) {
        if (file_.bad()) {
          Fail(absl::StrCat("error reading ", paths_[next_ - 1]));
          return;
        }
        file_.close();
      }
      if (next_ == paths_.size()) {
        done_ = true;
        return;
      }
      file_.open(paths_[next_], std::ios::binary);
      if (!file_.is_open()) {
        Fail(absl::StrCat("cannot open ", paths_[next_], ": ", std::strerror(errno)));
        return;
      }
      ++next_;
    }
  }

 private:
  static constexpr size_t kMaxPiece = 4096;

  void Fail(const std::string& message) {
    status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kNotFound, message);
    done_ = true;
  }

  std::vector<std::string> paths_;
  size_t next_ = 0;
  std::ifstream file_;
  std::string pending_;
  std::string value_;
  bool done_ = false;
  sentencepiece::util::Status status_;
};

absl::Status WriteFileAtomic(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("creating ", tmp, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  int err = 0;
  while (done < contents.size() && err == 0) {
    ssize_t w = ::write(fd, contents.data() + done, contents.size() - done);
    if (w < 0 && errno != EINTR) err = errno;
    if (w > 0) done += static_cast<size_t>(w);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("writing ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace

// ---- ByteTokenizer -------------------------------------------------------------------

std::vector<int> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<int> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::Decode(const int* ids, size_t n) const {
  std::string out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] >= 0 && ids[i] < 256) {
      out.push_back(static_cast<char>(ids[i]));
    } else {
      out += kReplacement;
    }
  }
  return out;
}

// ---- SentencePieceTokenizer ----------------------------------------------------------

struct SentencePieceTokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SentencePieceTokenizer::SentencePieceTokenizer(std::string path, std::unique_ptr<Impl> impl)
    : path_(std::move(path)), impl_(std::move(impl)) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::string& path) {
  if (!FileExists(path)) {
    return absl::NotFoundError(absl::StrCat(
        "tokenizer model ", path, ": ", std::strerror(errno),
        " (a tokenizer is 'byte' or a path to a SentencePiece .model file)"));
  }
  auto impl = std::make_unique<Impl>();
  sentencepiece::util::Status s = impl->processor.Load(path);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer model ", path, ": not a SentencePiece model: ", s.ToString()));
  }
  return std::unique_ptr<SentencePieceTokenizer>(
      new SentencePieceTokenizer(path, std::move(impl)));
}

int SentencePieceTokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }

std::vector<int> SentencePieceTokenizer::Encode(std::string_view text) const {
  std::vector<int> ids;
  sentencepiece::util::Status s = impl_->processor.Encode(text, &ids);
  // Encode fails only on an unloaded processor, which Load rules out.
  CHECK(s.ok()) << path_ << ": SentencePiece Encode failed: " << s.ToString();
  return ids;
}

std::string SentencePieceTokenizer::Decode(const int* ids, size_t n) const {
  // SentencePiece refuses a whole sequence for one bad id; decode the valid runs
  // between bad ids instead, and mark each bad id.
  const int vocab = vocab_size();
  std::string out;
  std::vector<int> run;
  auto flush = [&] {
    if (run.empty()) return;
    std::string text;
    sentencepiece::util::Status s = impl_->processor.Decode(run, &text);
    CHECK(s.ok()) << path_ << ": SentencePiece Decode failed: " << s.ToString();
    out += text;
    run.clear();
  };
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] >= 0 && ids[i] < vocab) {
      run.push_back(ids[i]);
    } else {
      flush();
      out += kReplacement;
    }
  }
  flush();
  return out;
}

// ---- Loading and training ------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  if (spec.empty()) {
    return absl::InvalidArgumentError(
        "empty tokenizer spec (expected 'byte' or a path to a SentencePiece .model file)");
  }
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> sp = SentencePieceTokenizer::Load(spec);
  if (!sp.ok()) return sp.status();
  return std::unique_ptr<Tokenizer>(*std::move(sp));
}

absl::Status TrainSentencePiece(const std::vector<std::string>& inputs,
                                const std::string& model_prefix, int vocab_size) {
  if (inputs.empty()) return absl::InvalidArgumentError("TrainSentencePiece: no input files");
  for (const std::string& path : inputs) {
    std::ifstream probe(path, std::ios::binary);
    if (!probe.is_open()) {
      return absl::NotFoundError(
          absl::StrCat("training input ", path, ": ", std::strerror(errno)));
    }
  }
  if (vocab_size <= 259 || vocab_size > 65536) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", vocab_size, " outside (259, 65536]: the 256 byte pieces and <unk>, ",
        "<s>, </s> come first, and shards hold uint16 tokens"));
  }
  const std::unordered_map<std::string, std::string> args = {
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(vocab_size)},
      {"model_type", "bpe"},
      // Any byte sequence encodes: characters outside the vocabulary become byte pieces
      // instead of <unk>, so a shard never loses text.
      {"byte_fallback", "true"},
      {"character_coverage", "1.0"},
      // Keep text exactly as is (Decode(Encode(s)) == s): no NFKC, no whitespace
      // folding, no dummy leading space (which would also make encoding depend on where
      // the text was cut into chunks).
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "true"},
      {"minloglevel", "2"},  // libsentencepiece logs every merge at INFO otherwise
  };
  FileLineIterator lines(inputs);
  sentencepiece::util::Status s = sentencepiece::SentencePieceTrainer::Train(args, &lines);
  if (!lines.status().ok()) {
    return absl::NotFoundError(absl::StrCat("training SentencePiece: ", lines.status().ToString()));
  }
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training SentencePiece model ", model_prefix, ".model (vocab_size ", vocab_size,
        "): ", s.ToString()));
  }
  return absl::OkStatus();
}

// ---- tokenizer.json ------------------------------------------------------------------

absl::Status WriteTokenizerInfo(const std::string& path, const TokenizerInfo& info) {
  nlohmann::json j = {{"tokenizer", info.spec}, {"vocab_size", info.vocab_size}};
  return WriteFileAtomic(path, j.dump(2) + "\n");
}

absl::StatusOr<TokenizerInfo> ReadTokenizerInfo(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return absl::NotFoundError(absl::StrCat("opening ", path, ": ", std::strerror(errno)));
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  auto spec = j.find("tokenizer");
  if (spec == j.end() || !spec->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field \"tokenizer\" missing or not a string"));
  }
  auto vocab = j.find("vocab_size");
  if (vocab == j.end() || !vocab->is_number_integer() || vocab->get<int64_t>() <= 0 ||
      vocab->get<int64_t>() > 65536) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": field \"vocab_size\" missing or not an integer in [1, 65536]"));
  }
  TokenizerInfo info;
  info.spec = spec->get<std::string>();
  info.vocab_size = vocab->get<int>();
  if (info.spec != "byte" && !info.spec.empty() && info.spec[0] != '/') {
    // A relative model path travels with the dataset directory, not the reader's cwd.
    size_t slash = path.rfind('/');
    if (slash != std::string::npos) info.spec = path.substr(0, slash + 1) + info.spec;
  }
  return info;
}

}  // namespace colossus
