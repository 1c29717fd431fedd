// One grid-stride kernel for every elementwise op (GELU, Add, Accumulate, Fill, Cast,
// AdamW): an op is a functor whose Apply<N>(i) reads, computes and writes elements
// [i, i + N). MapKernel calls Apply<kVec> on every full group of kVec elements and
// Apply<1> on the n % kVec left over, so any n is covered exactly once whatever kVec.
//
// Geometry: 256 threads per block; at most 32 blocks per SM (4 waves of 8 resident
// 256-thread blocks), enough loads in flight to saturate HBM, with each thread looping
// over several groups rather than the grid growing with n.
//
// kVec is 8 in the vector instantiation: 16 bytes per access for 2-byte types, two 16-byte
// accesses for f32, so ops that mix dtypes use one group size. It is used only when
// every pointer is 16-byte aligned (then every group start is too).
#pragma once

#include <cstdint>

#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {

constexpr int kMapThreads = 256;
constexpr int kMapVec = 8;

template <int kVec, typename Op>
__global__ void __launch_bounds__(kMapThreads) MapKernel(Op op, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t groups = n / kVec;
  for (int64_t g = tid; g < groups; g += stride) op.template Apply<kVec>(g * kVec);
  if constexpr (kVec > 1) {
    for (int64_t i = groups * kVec + tid; i < n; i += stride) op.template Apply<1>(i);
  }
}

// Launches op over n elements, vectorized when `aligned` (every pointer the op touches is
// 16-byte aligned). n == 0 launches nothing.
template <typename Op>
void LaunchMap(const LaunchContext& ctx, const Op& op, int64_t n, bool aligned) {
  if (n <= 0) return;
  const int64_t max_blocks = int64_t{32} * ctx.num_sms;
  if (aligned) {
    auto kernel = MapKernel<kMapVec, Op>;
    COLOSSUS_LAUNCH(kernel, BlocksFor((n + kMapVec - 1) / kMapVec, kMapThreads, max_blocks),
                    kMapThreads, ctx.stream, op, n);
  } else {
    auto kernel = MapKernel<1, Op>;
    COLOSSUS_LAUNCH(kernel, BlocksFor(n, kMapThreads, max_blocks), kMapThreads, ctx.stream, op,
                    n);
  }
  COLOSSUS_CUDA_CHECK_LAUNCH();
}

}  // namespace colossus::kernels::cuda
