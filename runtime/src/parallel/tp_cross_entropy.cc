#include "colossus/parallel/tp_cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "colossus/check.h"

namespace colossus::parallel {

absl::Status VocabParallelCrossEntropyForward(const float* logits, const int32_t* targets,
                                              int64_t N, const VocabSlice& slice,
                                              const HostAllReduceFn& all_reduce, float* losses,
                                              float* lse, float* scratch) {
  CHECK(N >= 0 && slice.width > 0) << "N " << N << " width " << slice.width;
  const int64_t real = slice.real();
  float* row_max = scratch;        // [N]
  float* sums = scratch + N;       // [2N]: sum of exp, then the target logit
  for (int64_t i = 0; i < N; ++i) {
    const float* z = logits + i * slice.width;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < real; ++j) m = std::max(m, z[j]);
    row_max[i] = m;
  }
  if (absl::Status s = all_reduce(row_max, N, comm::ReduceOp::kMax); !s.ok()) return s;
  for (int64_t i = 0; i < N; ++i) {
    const float* z = logits + i * slice.width;
    double sum = 0;
    for (int64_t j = 0; j < real; ++j) sum += std::exp(static_cast<double>(z[j]) - row_max[i]);
    sums[i] = static_cast<float>(sum);
    const int64_t t = static_cast<int64_t>(targets[i]) - slice.begin;
    // Only the owner of the target column contributes it; every other rank adds 0.
    sums[N + i] = targets[i] >= 0 && t >= 0 && t < real ? z[t] : 0.0f;
  }
  if (absl::Status s = all_reduce(sums, 2 * N, comm::ReduceOp::kSum); !s.ok()) return s;
  for (int64_t i = 0; i < N; ++i) {
    lse[i] = row_max[i] + std::log(sums[i]);
    losses[i] = targets[i] >= 0 ? lse[i] - sums[N + i] : 0.0f;
  }
  return absl::OkStatus();
}

void VocabParallelCrossEntropyBackward(float* dlogits, const float* logits, const float* lse,
                                       const int32_t* targets, float dloss, int64_t N,
                                       const VocabSlice& slice) {
  const int64_t real = slice.real();
  for (int64_t i = 0; i < N; ++i) {
    float* d = dlogits + i * slice.width;
    const float* z = logits + i * slice.width;
    if (targets[i] < 0) {
      for (int64_t j = 0; j < slice.width; ++j) d[j] = 0.0f;
      continue;
    }
    const int64_t t = static_cast<int64_t>(targets[i]) - slice.begin;
    for (int64_t j = 0; j < real; ++j) {
      const float p = std::exp(z[j] - lse[i]);
      d[j] = dloss * (p - (j == t ? 1.0f : 0.0f));
    }
    // Padding columns take no part in the softmax: no gradient, so they never move.
    for (int64_t j = real; j < slice.width; ++j) d[j] = 0.0f;
  }
}

}  // namespace colossus::parallel
