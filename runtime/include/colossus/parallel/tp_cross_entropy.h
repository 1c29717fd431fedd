// Vocabulary-parallel softmax + cross-entropy (Megatron's), for the tensor-parallel GPT
// (tensor_parallel.h): each rank of the TP group holds the logits of its own vocabulary
// columns [vocab_begin, vocab_begin + Vl) for all N rows, and the full row of Vp logits
// never exists anywhere. Per row, three reductions over the group:
//   max     the row's largest real logit (all-reduce MAX), for a stable exp,
//   sumexp  sum of exp(logit - max) over real columns and
//   target  the target's logit (from the one rank whose columns hold it, 0 elsewhere):
//           these two are summed in ONE all-reduce of 2N values.
// loss = log(sumexp) + max - target; lse = log(sumexp) + max is kept for backward, which
// needs no communication: dlogits = dloss * (exp(logit - lse) - onehot(target)).
//
// Columns of global index >= V (vocabulary padding) never take part: not in the max, not
// in the sum, and their gradient is exactly 0. A rank whose columns are all padding
// contributes -inf to the max and 0 to the sums. Rows with a negative target are
// ignored (loss 0, gradient 0), as in kernels::Backend::CrossEntropyForward.
//
// These run on HOST memory (the tensor-parallel model stages the [N, Vl] logits through
// the host: a copy on the CPU backend; a CUDA kernel is left for the GPU work). The
// reduction itself goes through `all_reduce`, so the caller decides how its buffer
// reaches the communicator.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "colossus/comm/types.h"

namespace colossus::parallel {

// In-place reduction of n host floats over the TP group.
using HostAllReduceFn = std::function<absl::Status(float* data, int64_t n, comm::ReduceOp op)>;

struct VocabSlice {
  int64_t begin = 0;  // first global column held
  int64_t width = 0;  // columns held (Vl); row stride of the logits
  int64_t vocab = 0;  // V, the real vocabulary; global columns >= V are padding
  // Real columns held: a prefix of the slice, [0, real()).
  int64_t real() const {
    const int64_t r = vocab - begin;
    return r < 0 ? 0 : (r > width ? width : r);
  }
};

// losses [N] (=) and lse [N] (=) from logits [N, width] and global targets [N].
// scratch: 3N floats. Errors come from all_reduce.
absl::Status VocabParallelCrossEntropyForward(const float* logits, const int32_t* targets,
                                              int64_t N, const VocabSlice& slice,
                                              const HostAllReduceFn& all_reduce, float* losses,
                                              float* lse, float* scratch);

// dlogits [N, width] (=; may alias logits) = dloss * (softmax - onehot) on real columns,
// 0 on padding columns and on ignored rows. Local: no communication.
void VocabParallelCrossEntropyBackward(float* dlogits, const float* logits, const float* lse,
                                       const int32_t* targets, float dloss, int64_t N,
                                       const VocabSlice& slice);

}  // namespace colossus::parallel
