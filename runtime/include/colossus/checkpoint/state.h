// The logical training state a checkpoint holds, and how a rank's memory maps onto it.
//
// Logical state: three f32 vectors of P elements each (P = GPT::num_parameters(), no
// alignment gaps, no ZeRO padding), in model.h's parameter order, tensors back to back:
//   kParams        the f32 master weights
//   kFirstMoment   AdamW's m
//   kSecondMoment  AdamW's v
// plus scalars (step, data position, RNG bytes, configs: writer.h's SaveRequest).
//
// A rank hands the writer whatever runs of these vectors it holds (SourcePiece: vector,
// logical offset, length, and where the bytes are), and asks the loader for whatever
// runs it needs (DestPiece). Neither side has to match the other's split: the writer
// stores the pieces with their logical offsets, the loader reads the overlap from
// whichever shard files hold it (checkpoint_reader.h). That is what lets plain DP
// (everything replicated), ZeRO-1 (moments sharded on the padded flat buffer, so its
// shard boundaries are not the checkpoint's), tensor parallelism (column blocks of
// matrices: strided pieces; parallel/tp_checkpoint.h) and a different world size all
// use one format.
//
// The model's flat buffers (flat_params(), the optimizers' moment views) are NOT the
// logical vector: MemoryPlan puts each tensor at a 64-byte aligned offset (zero gaps)
// and ZeRO pads the end. FlatLayout maps between the two.
//
// Thread safety: plain values; FlatLayout is immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "colossus/model.h"

namespace colossus::checkpoint {

enum class StateVector : uint8_t { kParams = 0, kFirstMoment = 1, kSecondMoment = 2 };
constexpr int kNumStateVectors = 3;

// "params", "adam_m", "adam_v": the names used in files and messages.
const char* StateVectorName(StateVector v);
// The inverse; false for an unknown name.
bool ParseStateVector(const std::string& name, StateVector* out);

// A run of logical vector `vector`, elements [offset, offset + numel); or, when strided
// (run > 0), numel / run runs of `run` elements each, run k covering logical elements
// [offset + k * stride, offset + k * stride + run). Either way the piece's data is its
// numel elements back to back, runs in order. A strided piece is how a tensor-parallel
// rank's column block of a row-major matrix (rows of a row-parallel weight, each
// restricted to this rank's columns) is one piece instead of one per row.
// Normal form (Normalized): run == 0 and stride == 0 for a contiguous piece, else
// 0 < run < numel, numel % run == 0, stride > run.
struct PieceRef {
  StateVector vector = StateVector::kParams;
  int64_t offset = 0;
  int64_t numel = 0;
  int64_t run = 0;
  int64_t stride = 0;
  bool operator==(const PieceRef&) const = default;
};

// Elements per run (numel for a contiguous piece) and the number of runs (0 when empty).
int64_t RunLength(const PieceRef& p);
int64_t RunCount(const PieceRef& p);
bool IsStrided(const PieceRef& p);
// One past the last logical element the piece touches (offset when empty). Assumes the
// piece is well formed (WellFormed); computed without overflow for any such piece whose
// span fits in int64.
int64_t SpanEnd(const PieceRef& p);
// Empty when `p` is in normal form with non-negative offset and numel and a span that
// fits in int64; otherwise what is wrong ("run 3 does not divide numel 10").
std::string WellFormed(const PieceRef& p);
// `p` with a strided form that is really contiguous (one run, or stride == run) turned
// into run = stride = 0.
PieceRef Normalized(PieceRef p);
// The pieces (at most three: a partial first run, whole runs, a partial last run) that
// hold data elements [begin, end) of `block` (0 <= begin <= end <= block.numel), in
// data order: how a range of a packed buffer that holds `block` is described.
std::vector<PieceRef> DataRange(const PieceRef& block, int64_t begin, int64_t end);

// A run this rank holds, to be saved: `data` points at numel f32 in the memory of the
// writer's SaveRequest::backend (host memory when that is null or a CPU backend).
// Borrowed: read only during CheckpointWriter::Save.
struct SourcePiece {
  PieceRef ref;
  const float* data = nullptr;
};

// A run this rank needs, to be loaded into `data` (numel f32, same memory rule as
// SourcePiece, through LoadRequest::backend).
struct DestPiece {
  PieceRef ref;
  float* data = nullptr;
};

// Data bytes of the pieces (4 x the sum of numel): what CheckpointWriter::Reserve needs.
int64_t SourceBytes(const std::vector<SourcePiece>& pieces);

// Rank r of d is responsible for elements [r*P/d, (r+1)*P/d) of each vector it holds
// in full (computed in 128-bit arithmetic: no overflow for any P). Ranges of
// consecutive ranks tile [0, P); some are empty when P < d.
int64_t SplitBegin(int64_t numel, int rank, int world);

// One tensor's place in both views: logical elements [logical, logical + numel) live at
// flat elements [flat, flat + numel).
struct LayoutSegment {
  int64_t logical = 0;
  int64_t flat = 0;
  int64_t numel = 0;
};

class FlatLayout {
 public:
  // The model's parameters in layout order (GPT::params()), each tensor's offset in
  // flat_params() taken from its address.
  static FlatLayout FromModel(const GPT& model);
  // Segments in increasing logical AND flat order, logically back to back from 0
  // (CHECKed). For tests and for buffers that are not a GPT's.
  explicit FlatLayout(std::vector<LayoutSegment> segments);
  // The identity layout over n elements (a buffer with no gaps).
  static FlatLayout Identity(int64_t n);

  int64_t numel() const { return numel_; }  // P
  const std::vector<LayoutSegment>& segments() const { return segments_; }

  // The parts of logical [begin, end) with their flat offsets, in order.
  std::vector<LayoutSegment> LogicalToFlat(int64_t begin, int64_t end) const;
  // The parts of flat [begin, end) that hold logical elements (gaps and padding
  // dropped), in order.
  std::vector<LayoutSegment> FlatToLogical(int64_t begin, int64_t end) const;

 private:
  std::vector<LayoutSegment> segments_;
  int64_t numel_ = 0;
};

// Source pieces of vector `v` for a buffer that holds the whole flat vector at
// `flat_base`, restricted to this rank's split [SplitBegin(r), SplitBegin(r+1)): how a
// replicated vector (plain DP's weights and moments, ZeRO's weights) is saved without
// every rank writing the same bytes.
std::vector<SourcePiece> SplitPieces(const FlatLayout& layout, StateVector v,
                                     const float* flat_base, int rank, int world);
// Source pieces of vector `v` for a buffer holding flat elements [flat_begin,
// flat_end) only, base[0] being element flat_begin: how a ZeRO-1 moment shard is saved.
std::vector<SourcePiece> FlatRangePieces(const FlatLayout& layout, StateVector v,
                                         const float* base, int64_t flat_begin,
                                         int64_t flat_end);
// Destination pieces for the same two shapes of buffer: the whole vector (every
// logical element), or the flat range [flat_begin, flat_end) at `base`.
std::vector<DestPiece> WholeDestPieces(const FlatLayout& layout, StateVector v, float* flat_base);
std::vector<DestPiece> FlatRangeDestPieces(const FlatLayout& layout, StateVector v, float* base,
                                           int64_t flat_begin, int64_t flat_end);

// What a data-parallel rank holds, in the model's flat layout: the whole parameter
// buffer, and the moments of flat elements [moments_begin, moments_end) (the whole
// buffer for plain DP's AdamW: 0 and flat_params().numel; ZeRO-1: shard_begin() and
// shard_begin() + shard_size()). Pointers in the model's backend memory.
struct HeldState {
  float* params = nullptr;
  float* first_moment = nullptr;   // element 0 is flat element moments_begin
  float* second_moment = nullptr;
  int64_t moments_begin = 0;
  int64_t moments_end = 0;
};

// The pieces rank `rank` of `world` saves: its split of the parameters, and of the
// moments when it holds them whole, or its whole moment range when it holds a range
// (ZeRO-1: the ranges of the ranks tile the buffer, so nothing is written twice).
std::vector<SourcePiece> PiecesToSave(const FlatLayout& layout, const HeldState& held, int rank,
                                      int world);
// The pieces it loads: every parameter, and the moments of its range.
std::vector<DestPiece> PiecesToLoad(const FlatLayout& layout, const HeldState& held);

}  // namespace colossus::checkpoint
