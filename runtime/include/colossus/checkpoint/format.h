// The on-disk format of a sharded checkpoint (versions 1 and 2).
//
// Directory layout under the checkpoint directory <dir>:
//   <dir>/step-<NNNNNNNN>/                  one directory per saved step (8+ digits)
//       shard-<rank>-of-<d>.bin             world rank's shard, d = dp x tp ranks
//                                           (written as <name>.tmp, fsynced, renamed
//                                           into place)
//       shard-<rank>-of-<d>.json            (coordinator commits only) the shard's report,
//                                           from which COMMIT.json is assembled
//       COMMIT.json                         written atomically once every shard is in
// A step directory without a COMMIT.json that parses is NOT a checkpoint, whatever
// else it holds. Committed steps skipped by a resume are renamed
// step-<NNNNNNNN>.discarded-<unix seconds> (DiscardStepsAfter), which no scan matches.
//
// Shard file:
//   offset 0   8 bytes   magic "COLSHARD"
//   offset 8   u32 LE    format version (1, or 2 when a piece is strided)
//   offset 12  u32 LE    H, bytes of the JSON header
//   offset 16  u64 LE    xxh64 (seed 0) of the H header bytes
//   offset 24  H bytes   JSON header (below)
//   zero bytes up to the data offset D = round_up(24 + H, 4096)
//   offset D   the pieces' f32 elements (little-endian), back to back in header order
// and nothing after: the file is exactly D + 4 * sum(numel) bytes.
//
// Shard JSON header:
//   {"format": "colossus-checkpoint-shard", "step": S, "rank": r, "num_shards": d,
//    "numel": P, "data_position": g,
//    "pieces": [{"vector": "params"|"adam_m"|"adam_v", "offset": o, "numel": n
//                [, "run": w, "stride": s]}, ...],       (strided: state.h's PieceRef)
//    "block_bytes": B, "blocks": ["<16 hex digits>", ...],
//    "rng": {"<name>": "<hex bytes>", ...}}
// blocks[k] is the xxh64 of data bytes [k*B, (k+1)*B) (the last block short): a reader
// that needs part of a shard reads and verifies only the blocks it touches.
//
// COMMIT.json (written by the committer, never by a rank for itself):
//   {"format": "colossus-checkpoint", "version": 1 or 2, "step": S, "numel": P,
//    "data_position": g, "layout": {"dp": d, "tp": t[, "zero": 0 | 1]}, "num_shards": d * t,
//    (layout.zero: added later; readers take commits without it as "not recorded")
//    "model_config": {"n_layer": ..., "n_head": ..., "n_embd": ..., "block_size": ...,
//                     "vocab_size": ..., "padded_vocab_size": ...},
//    "optimizer_config": {"lr": ..., "min_lr": ..., "warmup_steps": ..., "total_steps": ...,
//                         "beta1": ..., "beta2": ..., "eps": ..., "weight_decay": ...,
//                         "grad_clip": ...},
//    "shards": [{"rank": r, "file": "shard-r-of-d.bin", "bytes": N,
//                "xxh64": "<16 hex digits of the whole file>",
//                "pieces": [...as in the header...]}, ...]}
// Every vector that appears in any shard is covered over [0, P) by the union of the
// shards' pieces (checked before COMMIT.json is written).
// The pieces are logical runs of the canonical (unsharded, layout-independent) state of
// state.h whatever the layout the job ran at: a tensor-parallel rank writes its part of
// each tensor at that tensor's place in the whole model (strided pieces for column
// blocks), so a checkpoint saved at tp x dp loads at any tp' x dp', in one process, or
// into colossus-export.
//
// Thread safety: free functions over values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "colossus/checkpoint/state.h"
#include "colossus/config.h"
#include "colossus/optimizer.h"

namespace colossus::checkpoint {

inline constexpr char kShardMagic[8] = {'C', 'O', 'L', 'S', 'H', 'A', 'R', 'D'};
// Version 1: contiguous pieces only. Version 2: pieces may be strided (state.h:
// PieceRef::run, stride; "run" and "stride" fields in the JSON). A file or commit is
// written as version 2 only when it holds a strided piece, so data-parallel checkpoints
// stay version 1; readers take both.
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kStridedFormatVersion = 2;
inline constexpr int64_t kShardPrefixBytes = 24;  // magic, version, H, header xxh64
inline constexpr int64_t kDataAlignment = 4096;
inline constexpr int64_t kDefaultBlockBytes = int64_t{4} << 20;
inline constexpr const char* kCommitFileName = "COMMIT.json";

// "step-00000042" (at least 8 digits).
std::string StepDirName(int64_t step);
// The step of a "step-<digits>" name; false for anything else (".tmp", ".discarded-").
bool ParseStepDirName(const std::string& name, int64_t* step);
// "shard-3-of-8.bin"; the coordinator commit's report file "shard-3-of-8.json".
std::string ShardFileName(int rank, int num_shards);
std::string ShardReportFileName(int rank, int num_shards);
// <dir>/<StepDirName(step)>.
std::string StepDir(const std::string& dir, int64_t step);

// 16 lowercase hex digits, and back (false on anything else).
std::string Hex64(uint64_t v);
bool ParseHex64(const std::string& s, uint64_t* out);

// Facts about one step that every shard agrees on.
struct StepMeta {
  // Optimizer steps completed when the state was taken: a run resumed from it runs
  // 0-based step `step` next.
  int64_t step = 0;
  int64_t numel = 0;          // P
  int64_t data_position = 0;  // global index of the next training sample
  // The world layout at save time: data-parallel x tensor-parallel ranks (dp * tp
  // shards). A record only: the state is stored in the canonical layout (state.h), so
  // any layout loads it.
  int dp = 1;
  int tp = 1;
  // ZeRO stage at save time (1: moments sharded over dp > 1 ranks; 0: not sharded); a
  // record too.
  // -1: not recorded (a commit written before the field, "layout.zero", existed).
  int zero = -1;
  GPTConfig model;
  OptimizerConfig optimizer;
};

// What a rank tells the committer about its shard once it is durably in place.
struct ShardInfo {
  int rank = 0;
  int num_shards = 1;
  std::string file;   // name inside the step directory (ShardFileName)
  int64_t bytes = 0;  // file size
  uint64_t xxh64 = 0; // of the whole file
  std::vector<PieceRef> pieces;
};

// One shard's report: the step's facts and the shard's (a store value, a report file).
struct ShardReport {
  StepMeta meta;
  ShardInfo shard;
};
std::string EncodeShardReport(const ShardReport& report);
// InvalidArgument naming `what` (a file or store key) and the field.
absl::StatusOr<ShardReport> DecodeShardReport(const std::string& text, const std::string& what);

// The parsed COMMIT.json.
struct CommitRecord {
  StepMeta meta;
  std::vector<ShardInfo> shards;  // sorted by rank, ranks 0..num_shards-1
};
std::string EncodeCommit(const CommitRecord& record);
// DataLoss naming `path` and the field for anything that does not parse or is
// inconsistent (ranks missing or repeated, a piece outside [0, P)).
absl::StatusOr<CommitRecord> DecodeCommit(const std::string& text, const std::string& path);

// Whether the shards' pieces cover [0, P) of every vector that appears in them; the
// error (FailedPrecondition) names the vector and the first missing range.
absl::Status CheckCoverage(const std::vector<ShardInfo>& shards, int64_t numel);

// The shard file's JSON header.
struct ShardHeader {
  int64_t step = 0;
  int rank = 0;
  int num_shards = 1;
  int64_t numel = 0;
  int64_t data_position = 0;
  std::vector<PieceRef> pieces;
  int64_t block_bytes = kDefaultBlockBytes;
  std::vector<uint64_t> blocks;
  std::map<std::string, std::string> rng;  // name -> raw bytes
};
// The bytes [0, D) of a shard file: prefix, JSON, zero padding to kDataAlignment.
std::string EncodeShardPrefix(const ShardHeader& header);
// Parses the JSON header of a shard (the H bytes at offset 24); DataLoss naming `path`
// and the field. Checks that the block table fits the pieces.
absl::StatusOr<ShardHeader> DecodeShardHeader(const std::string& text, const std::string& path);
// Data bytes of the pieces (4 * sum of numel).
int64_t PieceBytes(const std::vector<PieceRef>& pieces);
// The format version a file holding `pieces` is written as (kStridedFormatVersion when
// one of them is strided, else kFormatVersion).
uint32_t FormatVersionOf(const std::vector<PieceRef>& pieces);

// The differences that make a checkpoint unusable for this run: FailedPrecondition
// naming the field, "<path>: model_config.n_layer is 4 in the checkpoint, 6 in this run".
absl::Status CheckModelConfig(const GPTConfig& saved, const GPTConfig& run, const std::string& path);
absl::Status CheckOptimizerConfig(const OptimizerConfig& saved, const OptimizerConfig& run,
                                  const std::string& path);

}  // namespace colossus::checkpoint
