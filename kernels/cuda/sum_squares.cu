// SumSquares: *out += sum of x[i]^2 over n elements of any float dtype, the building
// block of global-norm gradient clipping.
//
// Two kernels, deterministic (no atomics, a fixed reduction tree):
//  1. SumSquaresPartialKernel: a grid of at most kSumSquaresMaxBlocks 256-thread blocks, the
//     count a function of n alone (so the sum is bit-identical on every GPU); each
//     thread accumulates its grid-stride share in double (as the CPU does: 124M squared
//     f32 gradients summed in float would lose digits), vectorized 8 elements at a time
//     when x is 16-byte aligned; the block reduces in double and writes one partial.
//  2. SumSquaresFinalKernel: one block adds the partials in a fixed order and adds the
//     total to *out, rounding once to f32.
// Partials live in the backend's scratch (kSumSquaresMaxBlocks doubles).
#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {
namespace {

constexpr int kSumSquaresThreads = 256;
constexpr int kSumSquaresMaxBlocks = 1024;
constexpr int kSumSquaresVec = 8;

template <typename T, int kV>
__global__ void __launch_bounds__(kSumSquaresThreads)
    SumSquaresPartialKernel(double* __restrict__ partial, const T* __restrict__ x, int64_t n) {
  __shared__ double shared[32];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kSumSquaresThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kSumSquaresThreads + threadIdx.x;
  const int64_t groups = n / kV;
  double sum = 0.0;
  for (int64_t g = tid; g < groups; g += stride) {
    float v[kV];
    LoadVec<kV>(x + g * kV, v);
#pragma unroll
    for (int i = 0; i < kV; ++i) sum += static_cast<double>(v[i]) * v[i];
  }
  for (int64_t i = groups * kV + tid; i < n; i += stride) {
    const double e = ToFloat(x[i]);
    sum += e * e;
  }
  sum = BlockSum(sum, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(kSumSquaresThreads)
    SumSquaresFinalKernel(float* __restrict__ out, const double* __restrict__ partial,
                          int parts) {
  __shared__ double shared[32];
  double sum = 0.0;
  for (int p = threadIdx.x; p < parts; p += kSumSquaresThreads) sum += partial[p];
  sum = BlockSum(sum, shared);
  if (threadIdx.x == 0) *out = static_cast<float>(static_cast<double>(*out) + sum);
}

}  // namespace

void SumSquares(const LaunchContext& ctx, float* out, View x, int64_t n) {
  if (n == 0) return;  // adds nothing
  const unsigned blocks = BlocksFor((n + kSumSquaresVec - 1) / kSumSquaresVec, kSumSquaresThreads, kSumSquaresMaxBlocks);
  double* partial =
      static_cast<double*>(ctx.scratch->Get(blocks * sizeof(double), ctx.stream));
  const bool vec = Aligned16(x.data);
  DispatchFloat(
      x.dtype, "SumSquares",
      [&](auto tag) {
        using E = decltype(tag);
        auto kernel = vec ? SumSquaresPartialKernel<E, kSumSquaresVec> : SumSquaresPartialKernel<E, 1>;
        COLOSSUS_LAUNCH(kernel, blocks, kSumSquaresThreads, ctx.stream, partial, x.as<const E>(), n);
        COLOSSUS_CUDA_CHECK_LAUNCH();
      },
      /*allow_f16=*/true);
  COLOSSUS_LAUNCH(SumSquaresFinalKernel, 1, kSumSquaresThreads, ctx.stream, out, partial,
                  static_cast<int>(blocks));
  COLOSSUS_CUDA_CHECK_LAUNCH();
}

}  // namespace colossus::kernels::cuda
