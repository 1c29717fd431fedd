// Fused softmax + cross-entropy over the first V of Vp logit columns; the
// probabilities are never written out, backward rebuilds them from the saved lse.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "colossus/check.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/vec_math.h"

namespace colossus::kernels::cpu {

template <typename F>
void CrossEntropyForward(F* losses, F* lse, const F* logits, const int32_t* targets,
                         int64_t N, int V, int Vp) {
  CHECK(V > 0 && V <= Vp) << "CrossEntropyForward: need 0 < V <= Vp, got V=" << V
                          << " Vp=" << Vp;
#pragma omp parallel for schedule(static) if (N * V >= kMinParallelWork)
  for (int64_t i = 0; i < N; ++i) {
    const F* row = logits + i * Vp;
    F mx = -std::numeric_limits<F>::infinity();
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; ++j) mx = std::max(mx, row[j]);
    F sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; ++j) sum += Exp(row[j] - mx);
    const F l = mx + std::log(sum);
    lse[i] = l;
    const int32_t target = targets[i];
    CHECK(target < V) << "CrossEntropyForward: targets[" << i << "] = " << target
                      << " is not below V = " << V;
    losses[i] = target < 0 ? F(0) : l - row[target];
  }
}

template <typename F>
void CrossEntropyBackward(F* dlogits, const F* logits, const F* lse, const int32_t* targets,
                          F dloss, int64_t N, int V, int Vp) {
  CHECK(V > 0 && V <= Vp) << "CrossEntropyBackward: need 0 < V <= Vp, got V=" << V
                          << " Vp=" << Vp;
  // dlogits may alias logits: every element is read before it is written, at the same
  // index, except logits[target], which is saved first.
#pragma omp parallel for schedule(static) if (N * V >= kMinParallelWork)
  for (int64_t i = 0; i < N; ++i) {
    const F* row = logits + i * Vp;
    F* drow = dlogits + i * Vp;
    const int32_t target = targets[i];
    CHECK(target < V) << "CrossEntropyBackward: targets[" << i << "] = " << target
                      << " is not below V = " << V;
    if (target < 0) {
      std::fill(drow, drow + Vp, F(0));
      continue;
    }
    const F l = lse[i];
    const F target_logit = row[target];
#pragma omp simd
    for (int j = 0; j < V; ++j) drow[j] = dloss * Exp(row[j] - l);
    drow[target] = dloss * (Exp(target_logit - l) - F(1));
    // Padding columns are outside the softmax: their gradient is exactly zero.
    std::fill(drow + V, drow + Vp, F(0));
  }
}

#define COLOSSUS_INSTANTIATE(F)                                                              \
  template void CrossEntropyForward<F>(F*, F*, const F*, const int32_t*, int64_t, int, int); \
  template void CrossEntropyBackward<F>(F*, const F*, const F*, const int32_t*, F, int64_t,  \
                                        int, int);
COLOSSUS_INSTANTIATE(float)
COLOSSUS_INSTANTIATE(double)
#undef COLOSSUS_INSTANTIATE

}  // namespace colossus::kernels::cpu
