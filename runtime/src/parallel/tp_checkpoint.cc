// TpCheckpointLayout (tp_checkpoint.h): a tensor-parallel rank's state as pieces of the
// canonical checkpoint state.
#include "colossus/parallel/tp_checkpoint.h"

#include <algorithm>

#include "colossus/check.h"

namespace colossus::parallel {
namespace {

using checkpoint::PieceRef;
using checkpoint::SplitBegin;
using checkpoint::StateVector;

// Appends the pieces of vector `v` for packed local elements [a, b) of a tensor whose
// packed elements are `place` (in order); `data` points at element a.
template <typename Piece, typename Ptr>
void AppendRange(const std::vector<PieceRef>& place, StateVector v, Ptr data, int64_t a,
                 int64_t b, std::vector<Piece>* out) {
  int64_t at = 0;  // packed index where the current place piece starts
  for (const PieceRef& block : place) {
    const int64_t x = std::max(a, at), y = std::min(b, at + block.numel);
    if (x < y) {
      Ptr d = data + (x - a);
      for (PieceRef p : checkpoint::DataRange(block, x - at, y - at)) {
        p.vector = v;
        out->push_back({p, d});
        d += p.numel;
      }
    }
    at += block.numel;
  }
}

// The part [begin, end) of n elements that holder `index` of `count` is responsible for.
std::pair<int64_t, int64_t> Share(int64_t n, int index, int count) {
  return {SplitBegin(n, index, count), SplitBegin(n, index + 1, count)};
}

}  // namespace

TpCheckpointLayout::TpCheckpointLayout(const GPT& full, const TensorParallelGPT& model)
    : tp_rank_(model.tp_rank()), tp_(model.tp_size()), flat_numel_(model.flat_params().numel) {
  const checkpoint::FlatLayout layout = checkpoint::FlatLayout::FromModel(full);
  numel_ = layout.numel();
  CHECK(layout.segments().size() == model.params().size())
      << layout.segments().size() << " tensors in the full model, " << model.params().size()
      << " in the tensor-parallel one";
  for (size_t i = 0; i < model.params().size(); ++i) {
    Local t;
    t.flat = model.flat_offset(i);
    t.numel = model.params()[i].numel();
    t.sharded = model.sharded(i);
    int64_t packed = 0;
    for (PieceRef p : model.PlaceInFull(full, i)) {
      p.offset += layout.segments()[i].logical;
      packed += p.numel;
      t.place.push_back(p);
    }
    CHECK(packed == t.numel) << model.params()[i].name << ": " << packed << " placed of "
                             << t.numel;
    tensors_.push_back(std::move(t));
  }
}

std::vector<checkpoint::SourcePiece> TpCheckpointLayout::PiecesToSave(const TpHeldState& held,
                                                                      int dp_rank,
                                                                      int dp) const {
  CHECK(dp >= 1 && dp_rank >= 0 && dp_rank < dp) << "dp rank " << dp_rank << " of " << dp;
  const int world = dp * tp_, world_rank = dp_rank * tp_ + tp_rank_;
  const bool whole_moments = held.moments_begin <= 0 && held.moments_end >= flat_numel_;
  std::vector<checkpoint::SourcePiece> out;
  for (const Local& t : tensors_) {
    // Parameters are whole on every holder: sharded ones on the dp ranks of this TP
    // index, replicated ones on every rank.
    const int count = t.sharded ? dp : world;
    const int index = t.sharded ? dp_rank : world_rank;
    const auto [a, b] = Share(t.numel, index, count);
    AppendRange<checkpoint::SourcePiece, const float*>(t.place, StateVector::kParams,
                                                       held.params + t.flat + a, a, b, &out);
    const int64_t lo = std::max(t.flat, held.moments_begin);
    const int64_t hi = std::min(t.flat + t.numel, held.moments_end);
    if (lo >= hi) continue;
    // Whole moments have the parameters' holders; a ZeRO-1 range of a sharded tensor
    // is this rank's alone, of a replicated one shared with the TP ranks of its dp index.
    int m_count = count, m_index = index;
    if (!whole_moments) {
      m_count = t.sharded ? 1 : tp_;
      m_index = t.sharded ? 0 : tp_rank_;
    }
    const auto [sa, sb] = Share(hi - lo, m_index, m_count);
    const int64_t ma = lo - t.flat + sa, mb = lo - t.flat + sb;  // packed local indices
    const std::pair<StateVector, const float*> moments[] = {
        {StateVector::kFirstMoment, held.first_moment},
        {StateVector::kSecondMoment, held.second_moment}};
    for (const auto& [v, base] : moments) {
      AppendRange<checkpoint::SourcePiece, const float*>(
          t.place, v, base + (t.flat + ma - held.moments_begin), ma, mb, &out);
    }
  }
  return out;
}

std::vector<checkpoint::DestPiece> TpCheckpointLayout::PiecesToLoad(const TpHeldState& held) const {
  std::vector<checkpoint::DestPiece> out;
  for (const Local& t : tensors_) {
    AppendRange<checkpoint::DestPiece, float*>(t.place, StateVector::kParams,
                                               held.params + t.flat, 0, t.numel, &out);
    const int64_t lo = std::max(t.flat, held.moments_begin);
    const int64_t hi = std::min(t.flat + t.numel, held.moments_end);
    if (lo >= hi) continue;
    const std::pair<StateVector, float*> moments[] = {
        {StateVector::kFirstMoment, held.first_moment},
        {StateVector::kSecondMoment, held.second_moment}};
    for (const auto& [v, base] : moments) {
      AppendRange<checkpoint::DestPiece, float*>(t.place, v, base + (lo - held.moments_begin),
                                                 lo - t.flat, hi - t.flat, &out);
    }
  }
  return out;
}

}  // namespace colossus::parallel
