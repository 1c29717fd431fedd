#include "colossus/checkpoint/state.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

#include "colossus/check.h"

namespace colossus::checkpoint {

const char* StateVectorName(StateVector v) {
  switch (v) {
    case StateVector::kParams:
      return "params";
    case StateVector::kFirstMoment:
      return "adam_m";
    case StateVector::kSecondMoment:
      return "adam_v";
  }
  return "?";
}

bool ParseStateVector(const std::string& name, StateVector* out) {
  for (int i = 0; i < kNumStateVectors; ++i) {
    const StateVector v = static_cast<StateVector>(i);
    if (name == StateVectorName(v)) {
      *out = v;
      return true;
    }
  }
  return false;
}

int64_t RunLength(const PieceRef& p) { return p.run > 0 ? p.run : p.numel; }

int64_t RunCount(const PieceRef& p) {
  if (p.numel <= 0) return 0;
  return p.run > 0 ? p.numel / p.run : 1;
}

bool IsStrided(const PieceRef& p) { return p.run > 0 && p.run < p.numel; }

int64_t SpanEnd(const PieceRef& p) {
  if (p.numel <= 0) return p.offset;
  if (!IsStrided(p)) return p.offset + p.numel;
  return p.offset + (RunCount(p) - 1) * p.stride + p.run;
}

std::string WellFormed(const PieceRef& p) {
  if (p.offset < 0 || p.numel < 0) return "negative offset or numel";
  if (p.run == 0 && p.stride == 0) {
    if (p.offset > std::numeric_limits<int64_t>::max() - p.numel) return "span overflows";
    return "";
  }
  if (p.run <= 0 || p.run >= p.numel || p.numel % p.run != 0 || p.stride <= p.run) {
    return absl::StrCat("run ", p.run, ", stride ", p.stride, " is not a strided form of ",
                        p.numel, " elements (0 < run < numel, run divides numel, stride > run)");
  }
  // offset + (count - 1) * stride + run must fit.
  const __int128 end = static_cast<__int128>(p.offset) +
                       static_cast<__int128>(p.numel / p.run - 1) * p.stride + p.run;
  if (end > std::numeric_limits<int64_t>::max()) return "span overflows";
  return "";
}

PieceRef Normalized(PieceRef p) {
  if (p.run > 0 && (p.run >= p.numel || p.stride == p.run)) {
    p.run = 0;
    p.stride = 0;
  }
  return p;
}

std::vector<PieceRef> DataRange(const PieceRef& block, int64_t begin, int64_t end) {
  CHECK(0 <= begin && begin <= end && end <= block.numel)
      << "data range [" << begin << ", " << end << ") of a piece of " << block.numel;
  std::vector<PieceRef> out;
  if (begin == end) return out;
  if (!IsStrided(block)) {
    out.push_back({block.vector, block.offset + begin, end - begin});
    return out;
  }
  const int64_t w = block.run;
  auto logical = [&](int64_t data) { return block.offset + (data / w) * block.stride + data % w; };
  int64_t at = begin;
  if (at % w != 0) {  // the tail of a run
    const int64_t n = std::min(end, (at / w + 1) * w) - at;
    out.push_back({block.vector, logical(at), n});
    at += n;
  }
  const int64_t whole = (end - at) / w;
  if (whole > 0) {
    out.push_back(Normalized({block.vector, logical(at), whole * w, w, block.stride}));
    at += whole * w;
  }
  if (at < end) out.push_back({block.vector, logical(at), end - at});
  return out;
}

int64_t SourceBytes(const std::vector<SourcePiece>& pieces) {
  int64_t n = 0;
  for (const SourcePiece& p : pieces) n += p.ref.numel;
  return n * 4;
}

int64_t SplitBegin(int64_t numel, int rank, int world) {
  CHECK(world > 0 && rank >= 0 && rank <= world) << "rank " << rank << " of " << world;
  // numel * rank overflows int64 for a large model on many ranks.
  return static_cast<int64_t>(static_cast<__int128>(numel) * rank / world);
}

FlatLayout::FlatLayout(std::vector<LayoutSegment> segments) : segments_(std::move(segments)) {
  int64_t flat_end = 0;
  for (const LayoutSegment& s : segments_) {
    CHECK(s.numel >= 0 && s.logical == numel_ && s.flat >= flat_end)
        << "segment at logical " << s.logical << " flat " << s.flat << " of " << s.numel;
    numel_ += s.numel;
    flat_end = s.flat + s.numel;
  }
}

FlatLayout FlatLayout::Identity(int64_t n) {
  return FlatLayout(std::vector<LayoutSegment>{{0, 0, n}});
}

FlatLayout FlatLayout::FromModel(const GPT& model) {
  const float* base = model.flat_params().as<float>();
  std::vector<LayoutSegment> segments;
  int64_t logical = 0;
  for (const Tensor& t : model.params()) {
    const int64_t flat = static_cast<const float*>(t.data) - base;
    segments.push_back({logical, flat, t.numel()});
    logical += t.numel();
  }
  return FlatLayout(std::move(segments));
}

std::vector<LayoutSegment> FlatLayout::LogicalToFlat(int64_t begin, int64_t end) const {
  std::vector<LayoutSegment> out;
  // Segments are sorted by logical offset: find the first that ends after `begin`.
  auto it = std::upper_bound(segments_.begin(), segments_.end(), begin,
                             [](int64_t v, const LayoutSegment& s) { return v < s.logical + s.numel; });
  for (; it != segments_.end() && it->logical < end; ++it) {
    const int64_t a = std::max(begin, it->logical);
    const int64_t b = std::min(end, it->logical + it->numel);
    if (a < b) out.push_back({a, it->flat + (a - it->logical), b - a});
  }
  return out;
}

std::vector<LayoutSegment> FlatLayout::FlatToLogical(int64_t begin, int64_t end) const {
  std::vector<LayoutSegment> out;
  auto it = std::upper_bound(segments_.begin(), segments_.end(), begin,
                             [](int64_t v, const LayoutSegment& s) { return v < s.flat + s.numel; });
  for (; it != segments_.end() && it->flat < end; ++it) {
    const int64_t a = std::max(begin, it->flat);
    const int64_t b = std::min(end, it->flat + it->numel);
    if (a < b) out.push_back({it->logical + (a - it->flat), a, b - a});
  }
  return out;
}

std::vector<SourcePiece> SplitPieces(const FlatLayout& layout, StateVector v,
                                     const float* flat_base, int rank, int world) {
  const int64_t begin = SplitBegin(layout.numel(), rank, world);
  const int64_t end = SplitBegin(layout.numel(), rank + 1, world);
  std::vector<SourcePiece> out;
  for (const LayoutSegment& s : layout.LogicalToFlat(begin, end)) {
    out.push_back({{v, s.logical, s.numel}, flat_base + s.flat});
  }
  return out;
}

std::vector<SourcePiece> FlatRangePieces(const FlatLayout& layout, StateVector v,
                                         const float* base, int64_t flat_begin,
                                         int64_t flat_end) {
  std::vector<SourcePiece> out;
  for (const LayoutSegment& s : layout.FlatToLogical(flat_begin, flat_end)) {
    out.push_back({{v, s.logical, s.numel}, base + (s.flat - flat_begin)});
  }
  return out;
}

std::vector<DestPiece> WholeDestPieces(const FlatLayout& layout, StateVector v, float* flat_base) {
  std::vector<DestPiece> out;
  for (const LayoutSegment& s : layout.segments()) {
    if (s.numel > 0) out.push_back({{v, s.logical, s.numel}, flat_base + s.flat});
  }
  return out;
}

std::vector<DestPiece> FlatRangeDestPieces(const FlatLayout& layout, StateVector v, float* base,
                                           int64_t flat_begin, int64_t flat_end) {
  std::vector<DestPiece> out;
  for (const LayoutSegment& s : layout.FlatToLogical(flat_begin, flat_end)) {
    out.push_back({{v, s.logical, s.numel}, base + (s.flat - flat_begin)});
  }
  return out;
}

namespace {

// Logical elements in flat [begin, end).
int64_t LogicalCount(const FlatLayout& layout, int64_t begin, int64_t end) {
  int64_t n = 0;
  for (const LayoutSegment& s : layout.FlatToLogical(begin, end)) n += s.numel;
  return n;
}

}  // namespace

std::vector<SourcePiece> PiecesToSave(const FlatLayout& layout, const HeldState& held, int rank,
                                      int world) {
  std::vector<SourcePiece> out = SplitPieces(layout, StateVector::kParams, held.params, rank, world);
  // Moments held whole (plain DP, or ZeRO on one rank) are replicated: write this rank's
  // split. A ZeRO-1 range is this rank's alone, and the ranges tile the buffer: write
  // all of it.
  const bool whole = LogicalCount(layout, held.moments_begin, held.moments_end) == layout.numel();
  const std::pair<StateVector, const float*> moments[] = {
      {StateVector::kFirstMoment, held.first_moment},
      {StateVector::kSecondMoment, held.second_moment}};
  const int64_t split_begin = SplitBegin(layout.numel(), rank, world);
  const int64_t split_end = SplitBegin(layout.numel(), rank + 1, world);
  for (const auto& [v, data] : moments) {
    if (whole) {
      // Element 0 of `data` is flat element moments_begin.
      for (const LayoutSegment& s : layout.LogicalToFlat(split_begin, split_end)) {
        out.push_back({{v, s.logical, s.numel}, data + (s.flat - held.moments_begin)});
      }
    } else {
      std::vector<SourcePiece> part =
          FlatRangePieces(layout, v, data, held.moments_begin, held.moments_end);
      out.insert(out.end(), part.begin(), part.end());
    }
  }
  return out;
}

std::vector<DestPiece> PiecesToLoad(const FlatLayout& layout, const HeldState& held) {
  std::vector<DestPiece> out = WholeDestPieces(layout, StateVector::kParams, held.params);
  for (const auto& [v, data] : {std::pair<StateVector, float*>{StateVector::kFirstMoment,
                                                               held.first_moment},
                                std::pair<StateVector, float*>{StateVector::kSecondMoment,
                                                               held.second_moment}}) {
    std::vector<DestPiece> part =
        FlatRangeDestPieces(layout, v, data, held.moments_begin, held.moments_end);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

}  // namespace colossus::checkpoint
