// Training data: token shards on disk and the deterministic data loader over them.
//
// Token shards use llm.c's `.bin` layout, so llm.c's data preparation scripts (and
// ours, `colossus-data encode`) produce files either side can read:
//
//   [1024 bytes]  256 little-endian int32: [0] = 20240520 (magic), [1] = 1 (version:
//                 uint16 tokens), [2] = number of tokens N, [3] = vocabulary size
//                 (0 = unknown; llm.c leaves it 0, our writer fills it in), rest zero
//   [2N bytes]    the tokens, little-endian uint16
//
// The sample stream is a pure function of (seed, global sample index): sample g is
// window PermuteWindow(seed, g / W, g % W, W) of the dataset's W windows. A run resumed
// at any step, or on any data-parallel size, therefore sees exactly the samples an
// uninterrupted run would, without saving loader state. Rank r of R at step s with
// per-rank batch B reads Batch(s * R * B + r * B, B, ...).
//
// Errors name the file and, for content errors, the byte offset, e.g.
//   "/data/train_000003.bin: header says 1000 tokens: expected 2000 bytes of tokens at
//    offset 1024, file has 1500 (truncated?)"
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colossus {

inline constexpr int32_t kTokenShardMagic = 20240520;
inline constexpr int32_t kTokenShardVersion = 1;  // uint16 tokens
inline constexpr int64_t kTokenShardHeaderInts = 256;
inline constexpr int64_t kTokenShardHeaderBytes = kTokenShardHeaderInts * 4;
// uint16 tokens: the largest vocabulary a version-1 shard can hold.
inline constexpr int kTokenShardMaxVocab = 65536;

// Writes `n` tokens to `path` atomically: into `path + ".tmp"`, fsync'ed, renamed over
// `path`, then the directory fsync'ed. On any error (full disk, missing directory,
// permission) the temporary file is removed, `path` keeps whatever it held before, and
// the Status names the file. `vocab_size` goes into header[3] (0 = unknown).
// InvalidArgument: n < 0, n > INT32_MAX (the header's count is int32), vocab_size
// outside [0, 65536], a token >= vocab_size (named by index), null tokens with n > 0.
// Two concurrent writers of the same path race on the temporary file: don't.
absl::Status WriteTokenShard(const std::string& path, const uint16_t* tokens, int64_t n,
                             int vocab_size);

// The header fields of a shard, as stored (for `colossus-data inspect`).
struct TokenShardHeader {
  int32_t magic = 0;
  int32_t version = 0;
  int64_t num_tokens = 0;  // header[2]
  int32_t vocab_size = 0;  // header[3]; 0 = unknown
  int64_t file_bytes = 0;  // size of the file on disk
};

// Reads only the header. Fails (naming the file) if the file cannot be read or is
// shorter than the header; does not validate the fields: TokenShard::Open does.
absl::StatusOr<TokenShardHeader> ReadTokenShardHeader(const std::string& path);

// A read-only, memory-mapped token shard. Move-only; the mapping (and so tokens())
// lives as long as the object. Thread safety: every method is const and safe to call
// from any number of threads.
class TokenShard {
 public:
  // Maps `path` and validates it: header present, magic, version 1, header count
  // consistent with the file size, and (when vocab_size > 0) header[3] equal to
  // vocab_size if the header records one, and every token < vocab_size (O(n), a
  // sequential pass over the file). vocab_size <= 0 skips the range checks.
  // Errors (DataLoss for a corrupt file, InvalidArgument for a vocabulary mismatch,
  // NotFound / PermissionDenied from the OS) name the file and the byte offset.
  static absl::StatusOr<TokenShard> Open(const std::string& path, int vocab_size);

  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  ~TokenShard();

  int64_t size() const { return size_; }  // number of tokens
  // size() tokens; null when size() == 0. Points into the read-only mapping.
  const uint16_t* tokens() const { return tokens_; }
  const std::string& path() const { return path_; }
  // header[3]: the vocabulary the writer declared, 0 when unknown (llm.c shards).
  int header_vocab_size() const { return header_vocab_size_; }

 private:
  TokenShard() = default;

  std::string path_;
  void* map_ = nullptr;  // whole file, PROT_READ; munmap'ed by the destructor
  size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t size_ = 0;
  int header_vocab_size_ = 0;
};

// The keyed pseudo-random permutation behind shuffling: a bijection of [0, n) chosen by
// (seed, epoch). A 6-round Feistel network on the smallest power-of-four domain >= n,
// with round keys drawn from splitmix64(seed, epoch); values outside [0, n) are walked
// through the network again until they land inside (cycle walking), which keeps it a
// bijection of [0, n) and costs under 4 passes on average.
// The function is part of the data contract: changing it changes which samples every
// existing run sees after a resume. Pure and thread-safe.
// REQUIRES: n >= 1, 0 <= p < n, epoch >= 0.
int64_t PermuteWindow(uint64_t seed, int64_t epoch, int64_t p, int64_t n);

// Serves training samples from a list of shards. Each sample is a window of T + 1
// consecutive tokens of one shard: inputs = the first T, targets = the last T (inputs
// shifted by one). Window k of a shard starts at token k * T, so consecutive windows
// share one boundary token and every token but a shard's first is a target exactly
// once per epoch (as in llm.c); a shard of n tokens holds (n - 1) / T windows, and its
// last (n - 1) % T tokens are never a target. The dataset's windows are those of its
// shards in order; W = num_windows().
//
// Sample g is window PermuteWindow(seed, g / W, g % W, W) (shuffle) or window g % W (no
// shuffle: validation reads the windows in order). Every epoch visits each window
// exactly once, in a new order.
//
// Thread safety: the loader is immutable after Open; Sample and Batch are const and may
// be called concurrently from any number of threads.
class DataLoader {
 public:
  // Opens the shards named by `paths_or_globs`: each entry is a glob(3) pattern (a plain
  // path is a pattern that matches itself); each pattern's matches in byte order,
  // patterns in the order given. Every shard is validated (TokenShard::Open with
  // vocab_size). Errors: a pattern matching nothing (NotFound, naming the pattern),
  // any shard error, T < 1, an empty list, a dataset with no window of T + 1 tokens
  // (InvalidArgument naming the files, their token counts and T). Shards too short for
  // one window are skipped when others have windows.
  static absl::StatusOr<std::unique_ptr<DataLoader>> Open(
      std::vector<std::string> paths_or_globs, int vocab_size, int T, uint64_t seed,
      bool shuffle = true);

  int64_t num_windows() const { return num_windows_; }  // W
  int64_t num_tokens() const { return num_tokens_; }    // all tokens of all shards
  int T() const { return T_; }
  uint64_t seed() const { return seed_; }
  bool shuffle() const { return shuffle_; }
  // The shards in dataset order (including any skipped for being too short).
  const std::vector<TokenShard>& shards() const { return shards_; }

  // Which window sample g reads, and where that window lives.
  struct WindowRef {
    int64_t window = 0;  // in [0, W)
    int shard = 0;       // index into shards()
    int64_t offset = 0;  // first token of the window within the shard
  };
  WindowRef Locate(int64_t g) const;  // REQUIRES: g >= 0

  // Writes sample g's T inputs and T targets. REQUIRES: g >= 0; both buffers hold T.
  void Sample(int64_t g, int32_t* inputs, int32_t* targets) const;
  // Samples first_g .. first_g + B - 1, row b at [b * T, (b + 1) * T) of each buffer.
  // REQUIRES: first_g >= 0, B >= 0; both buffers hold B * T.
  void Batch(int64_t first_g, int B, int32_t* inputs, int32_t* targets) const;

 private:
  DataLoader() = default;

  std::vector<TokenShard> shards_;
  // window_begin_[i] = windows in shards 0..i-1; size shards_.size() + 1.
  std::vector<int64_t> window_begin_;
  int64_t num_windows_ = 0;
  int64_t num_tokens_ = 0;
  int T_ = 0;
  uint64_t seed_ = 0;
  bool shuffle_ = true;
};

}  // namespace colossus
