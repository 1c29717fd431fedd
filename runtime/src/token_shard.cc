// Token shards in llm.c's .bin layout: the atomic writer and the mmap'ed reader.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "colossus/data.h"
#include "file_util.h"

namespace colossus {
namespace {

// The format is little-endian and we reinterpret the mapping in place.
static_assert(std::endian::native == std::endian::little,
              "token shards are read in place: little-endian hosts only");

using internal::ErrnoStatus;
using internal::Fd;

absl::Status PreadAll(int fd, void* data, size_t bytes, const std::string& path) {
  char* p = static_cast<char*>(data);
  off_t offset = 0;
  while (bytes > 0) {
    ssize_t r = ::pread(fd, p, bytes, offset);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("reading ", path));
    }
    if (r == 0) return absl::DataLossError(absl::StrCat(path, ": unexpected end of file"));
    p += r;
    offset += r;
    bytes -= static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteTokenShard(const std::string& path, const uint16_t* tokens, int64_t n,
                             int vocab_size) {
  if (n < 0 || n > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": cannot write ", n, " tokens (a shard holds 0 to ", INT32_MAX, ")"));
  }
  if (n > 0 && tokens == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": null tokens for n = ", n));
  }
  if (vocab_size < 0 || vocab_size > kTokenShardMaxVocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": vocab_size ", vocab_size, " outside [0, ", kTokenShardMaxVocab,
        "] (uint16 tokens)"));
  }
  // Refuse to write what the reader would refuse, so a bad tokenizer fails here, naming
  // the token, rather than at training time.
  if (vocab_size > 0) {
    for (int64_t i = 0; i < n; ++i) {
      if (tokens[i] >= vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": token ", tokens[i], " (index ", i, ") >= vocab_size ", vocab_size));
      }
    }
  }

  int32_t header[kTokenShardHeaderInts] = {};
  header[0] = kTokenShardMagic;
  header[1] = kTokenShardVersion;
  header[2] = static_cast<int32_t>(n);
  header[3] = vocab_size;

  return internal::WriteFileAtomically(
      path, {{header, static_cast<size_t>(kTokenShardHeaderBytes)},
             {tokens, static_cast<size_t>(n) * sizeof(uint16_t)}});
}

namespace {

// Reads the header through an open descriptor, so Open validates and maps the same file
// even if the path is replaced in between.
absl::StatusOr<TokenShardHeader> ReadHeader(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  if (st.st_size < kTokenShardHeaderBytes) {
    return absl::DataLossError(absl::StrCat(
        path, ": file has ", st.st_size, " bytes, shorter than the ", kTokenShardHeaderBytes,
        "-byte header at offset 0"));
  }
  int32_t header[4];
  if (auto s = PreadAll(fd, header, sizeof(header), path); !s.ok()) return s;
  TokenShardHeader h;
  h.magic = header[0];
  h.version = header[1];
  h.num_tokens = header[2];
  h.vocab_size = header[3];
  h.file_bytes = st.st_size;
  return h;
}

}  // namespace

absl::StatusOr<TokenShardHeader> ReadTokenShardHeader(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, absl::StrCat("opening ", path));
  return ReadHeader(fd.get(), path);
}

absl::StatusOr<TokenShard> TokenShard::Open(const std::string& path, int vocab_size) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, absl::StrCat("opening ", path));
  absl::StatusOr<TokenShardHeader> h = ReadHeader(fd.get(), path);
  if (!h.ok()) return h.status();

  if (h->magic != kTokenShardMagic) {
    return absl::DataLossError(absl::StrCat(
        path, ": bad magic at byte offset 0: expected ", kTokenShardMagic, ", found ",
        h->magic, " (not an llm.c token shard)"));
  }
  if (h->version != kTokenShardVersion) {
    return absl::DataLossError(absl::StrCat(
        path, ": unsupported version ", h->version, " at byte offset 4 (only version ",
        kTokenShardVersion, ", uint16 tokens, is supported)"));
  }
  if (h->num_tokens < 0) {
    return absl::DataLossError(absl::StrCat(
        path, ": negative token count ", h->num_tokens, " at byte offset 8"));
  }
  const int64_t have = h->file_bytes - kTokenShardHeaderBytes;
  const int64_t want = h->num_tokens * 2;
  if (have != want) {
    return absl::DataLossError(absl::StrCat(
        path, ": header says ", h->num_tokens, " tokens: expected ", want,
        " bytes of tokens at offset ", kTokenShardHeaderBytes, ", file has ", have,
        have < want ? " (truncated)" : " (trailing bytes)"));
  }
  if (h->vocab_size < 0 || h->vocab_size > kTokenShardMaxVocab) {
    return absl::DataLossError(absl::StrCat(
        path, ": vocab_size ", h->vocab_size, " at byte offset 12 outside [0, ",
        kTokenShardMaxVocab, "]"));
  }
  if (vocab_size > 0 && h->vocab_size != 0 && h->vocab_size != vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": shard was written for vocab_size ", h->vocab_size,
        " (header byte offset 12) but the reader expects ", vocab_size,
        " (a different tokenizer?)"));
  }

  TokenShard shard;
  shard.path_ = path;
  shard.header_vocab_size_ = h->vocab_size;
  shard.size_ = h->num_tokens;
  shard.map_bytes_ = static_cast<size_t>(h->file_bytes);
  // MAP_PRIVATE + PROT_READ: the file is never written through the mapping, and the
  // page cache is shared with every other process reading the same shard.
  void* map = ::mmap(nullptr, shard.map_bytes_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map == MAP_FAILED) return ErrnoStatus(errno, absl::StrCat("mmap ", path));
  shard.map_ = map;  // owned from here: the destructor unmaps on every return below
  // The header is 1024 bytes and mmap is page-aligned, so the tokens are 2-aligned.
  shard.tokens_ = shard.size_ > 0 ? reinterpret_cast<const uint16_t*>(
                                        static_cast<const char*>(map) + kTokenShardHeaderBytes)
                                  : nullptr;

  if (vocab_size > 0 && vocab_size < kTokenShardMaxVocab) {
    // Branch-free max first (vectorises, runs at memory bandwidth); look for the first
    // offender only when there is one.
    const uint16_t* t = shard.tokens_;
    uint16_t max_token = 0;
    for (int64_t i = 0; i < shard.size_; ++i) max_token = t[i] > max_token ? t[i] : max_token;
    if (max_token >= vocab_size) {
      for (int64_t i = 0; i < shard.size_; ++i) {
        if (t[i] >= vocab_size) {
          return absl::DataLossError(absl::StrCat(
              path, ": token ", t[i], " at byte offset ", kTokenShardHeaderBytes + 2 * i,
              " (index ", i, ") >= vocab_size ", vocab_size));
        }
      }
    }
  }
  // Close the descriptor now (Fd's destructor): the mapping keeps the file alive, and a
  // loader over thousands of shards must not hold thousands of descriptors.
  return shard;
}

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      tokens_(std::exchange(other.tokens_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      header_vocab_size_(std::exchange(other.header_vocab_size_, 0)) {}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) ::munmap(map_, map_bytes_);
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    size_ = std::exchange(other.size_, 0);
    header_vocab_size_ = std::exchange(other.header_vocab_size_, 0);
  }
  return *this;
}

TokenShard::~TokenShard() {
  if (map_ != nullptr) CHECK(::munmap(map_, map_bytes_) == 0) << path_ << ": munmap failed";
}

}  // namespace colossus
