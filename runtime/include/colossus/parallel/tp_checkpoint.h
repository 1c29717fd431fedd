// Checkpoints of a tensor-parallel job, in the canonical layout.
//
// A checkpoint holds the state of the WHOLE model (checkpoint/state.h: parameters and
// AdamW moments as three vectors in GPT's parameter order), whatever the layout that
// saved it. A rank of a tp x dp job writes its part of that state where it belongs:
// each of its local tensors is a set of row ranges and/or a column block of the whole
// tensor (TensorParallelGPT::PlaceInFull), so it maps to a few pieces at the whole
// tensor's logical offset, a column block being one strided piece. Nothing is gathered
// and nothing crosses the network to save or load.
//
// Who writes what (every element exactly once):
//   sharded tensors     held by the dp ranks of one TP index: each writes its 1/dp
//                       (SplitBegin by its dp index) of the local tensor;
//   replicated tensors  (LayerNorms, wpe, row-parallel biases) held by every rank: each
//                       of the tp x dp ranks writes its 1/(tp x dp);
//   moments under ZeRO-1 (TpAdamW with zero): a rank holds the moments of one range of
//                       its local flat buffer; that range of a sharded tensor is its
//                       alone (written whole), of a replicated tensor it is shared with
//                       the other TP ranks of its dp index (each writes 1/tp of it).
// Loading: every rank reads its whole local tensors' parameters, and the moments of the
// range it holds, from whichever shards hold them (checkpoint/reader.h), so a
// checkpoint saved at tp x dp (ZeRO or not) loads at any tp' x dp', and one saved by a
// data-parallel job or a single process loads into a tensor-parallel one.
//
// Thread safety: immutable after construction. Pointers in the pieces are borrowed.
#pragma once

#include <cstdint>
#include <vector>

#include "colossus/checkpoint/state.h"
#include "colossus/model.h"
#include "colossus/parallel/tensor_parallel.h"

namespace colossus::parallel {

// What one rank holds, in its TensorParallelGPT's flat layout (backend memory): the
// whole local parameter buffer, and the moments of local flat elements
// [moments_begin, moments_end) (element 0 of first_moment is flat element
// moments_begin): the whole buffer without ZeRO, the rank's ZeRO-1 shard with it.
struct TpHeldState {
  float* params = nullptr;
  float* first_moment = nullptr;
  float* second_moment = nullptr;
  int64_t moments_begin = 0;
  int64_t moments_end = 0;
};

class TpCheckpointLayout {
 public:
  // `full`: a GPT of the model's config (the canonical order, offsets and shapes; its
  // data is not read). Neither is referenced afterwards: what is needed is copied.
  TpCheckpointLayout(const GPT& full, const TensorParallelGPT& model);

  int64_t numel() const { return numel_; }  // P, the canonical vectors' length

  // The pieces this rank (dp index dp_rank of dp; its TP index is the model's) writes.
  std::vector<checkpoint::SourcePiece> PiecesToSave(const TpHeldState& held, int dp_rank,
                                                    int dp) const;
  // The pieces it loads: every local parameter and the moments of its range.
  std::vector<checkpoint::DestPiece> PiecesToLoad(const TpHeldState& held) const;

 private:
  struct Local {
    int64_t flat = 0;   // offset in the local flat buffer
    int64_t numel = 0;  // local elements
    bool sharded = false;
    std::vector<checkpoint::PieceRef> place;  // canonical logical pieces, packed order
  };
  std::vector<Local> tensors_;
  int tp_rank_ = 0;
  int tp_ = 1;
  int64_t flat_numel_ = 0;
  int64_t numel_ = 0;
};

}  // namespace colossus::parallel
