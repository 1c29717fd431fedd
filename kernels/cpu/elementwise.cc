// Elementwise ops: GELU (GPT-2's tanh approximation), Add, Accumulate.
#include <cmath>
#include <cstdint>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/vec_math.h"

namespace colossus::kernels::cpu {
namespace {

template <typename F>
constexpr F kSqrt2OverPi = static_cast<F>(0.797884560802865355879892119868763737L);
template <typename F>
constexpr F kGeluCubic = static_cast<F>(0.044715);

}  // namespace

// GELU's tanh form rewritten with 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + e^(-2u)):
// the same function, one exp instead of a tanh, and no cancellation in 1 + tanh(u) for
// negative x (in float, 1 + tanh(u) is off by an ulp of 1 near u = -9, which
// 0.5 x (1 + tanh u) turns into an absolute error of 3e-8 |x|).
template <typename F>
void GeluForward(F* out, const F* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const F x = inp[i];
    const F u = kSqrt2OverPi<F> * (x + kGeluCubic<F> * x * x * x);
    out[i] = x / (F(1) + Exp(F(-2) * u));
  }
}

template <typename F>
void GeluBackward(F* dinp, const F* inp, const F* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const F x = inp[i];
    const F u = kSqrt2OverPi<F> * (x + kGeluCubic<F> * x * x * x);
    const F s = F(1) / (F(1) + Exp(F(-2) * u));  // sigmoid(2u)
    // d/dx [x s] = s + x s (1 - s) * 2 du/dx
    const F du = kSqrt2OverPi<F> * (F(1) + F(3) * kGeluCubic<F> * x * x);
    dinp[i] = (s + x * s * (F(1) - s) * F(2) * du) * dout[i];
  }
}

template <typename F>
void Add(F* out, const F* a, const F* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename F>
void Accumulate(F* dst, const F* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

#define COLOSSUS_INSTANTIATE(F)                                       \
  template void GeluForward<F>(F*, const F*, int64_t);                \
  template void GeluBackward<F>(F*, const F*, const F*, int64_t);     \
  template void Add<F>(F*, const F*, const F*, int64_t);              \
  template void Accumulate<F>(F*, const F*, int64_t);
COLOSSUS_INSTANTIATE(float)
COLOSSUS_INSTANTIATE(double)
#undef COLOSSUS_INSTANTIATE

}  // namespace colossus::kernels::cpu
