// LayerNorm over the last dimension (eps 1e-5, biased variance), optionally fused with
// the residual add before it; forward and backward.
//
// Forward, one warp per row, 8 rows per 256-thread block (grid ceil(N / 8)). A row is
// reduced twice (mean, then squared deviations: the two-pass form, which does not
// cancel when |mean| >> std) and then written, so each lane walks its columns three
// times; only the first walk reaches DRAM, the other two find the row (C * 2 bytes in
// bf16 per warp) in L1. No row is held in registers, so any C works. With the residual
// fused, the first walk also computes a + b, rounds it to the storage type, stores it,
// and sums the rounded values, so the statistics are exactly those of the stored
// residual; the later walks re-read the residual each lane itself stored (same thread,
// same addresses: program order makes the stores visible).
//
// Backward, in two parts:
//  * dinp (+=): one warp per row, as the forward. The row's two reductions,
//    mean(w * dout) and mean(w * dout * xhat), come first; the second walk writes.
//  * dweight, dbias (+=): column sums over all rows of dout * xhat and dout, through the
//    deterministic two-kernel column reduction of column_reduce.cuh. It reads dout and
//    inp a second time: one more pass over two [N, C] arrays than a single fused kernel,
//    in exchange for no row-length limit and no atomics.
#include <cmath>

#include "cuda/check.h"
#include "cuda/column_reduce.cuh"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {
namespace {

constexpr int kRowsPerBlock = 8;
constexpr float kEps = 1e-5f;

// residual and a/b may alias (the in-place residual stream), hence no __restrict__ on
// them: every element is read and then written by the same thread at the same index.
template <typename T, int kVec, bool kResidual>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    LayerNormForwardKernel(T* __restrict__ out, float* __restrict__ mean,
                           float* __restrict__ rstd, T* residual, const T* a, const T* b,
                           const T* __restrict__ weight, const T* __restrict__ bias,
                           int64_t N, int C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const int lane = threadIdx.x % 32;
  const int64_t offset = row * C;
  const T* x = kResidual ? residual + offset : a + offset;

  float sum = 0.0f;
  for (int c = lane * kVec; c < C; c += 32 * kVec) {
    float v[kVec];
    if constexpr (kResidual) {
      float w[kVec];
      LoadVec<kVec>(a + offset + c, v);
      LoadVec<kVec>(b + offset + c, w);
#pragma unroll
      for (int i = 0; i < kVec; ++i) v[i] = RoundTo<T>(v[i] + w[i]);
      StoreVec<kVec>(residual + offset + c, v);
    } else {
      LoadVec<kVec>(x + c, v);
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) sum += v[i];
  }
  const float m = WarpSum(sum) / C;

  float sq = 0.0f;
  for (int c = lane * kVec; c < C; c += 32 * kVec) {
    float v[kVec];
    LoadVec<kVec>(x + c, v);
#pragma unroll
    for (int i = 0; i < kVec; ++i) sq += (v[i] - m) * (v[i] - m);
  }
  const float s = 1.0f / sqrtf(WarpSum(sq) / C + kEps);

  T* o = out + offset;
  for (int c = lane * kVec; c < C; c += 32 * kVec) {
    float v[kVec], w[kVec], bb[kVec];
    LoadVec<kVec>(x + c, v);
    LoadVec<kVec>(weight + c, w);
    LoadVec<kVec>(bias + c, bb);
#pragma unroll
    for (int i = 0; i < kVec; ++i) v[i] = (v[i] - m) * s * w[i] + bb[i];
    StoreVec<kVec>(o + c, v);
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    LayerNormBackwardInputKernel(T* dinp, const T* dout, const T* __restrict__ inp,
                                 const T* __restrict__ weight, const float* __restrict__ mean,
                                 const float* __restrict__ rstd, int64_t N, int C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const int lane = threadIdx.x % 32;
  const int64_t offset = row * C;
  const float m = mean[row];
  const float s = rstd[row];

  float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
  for (int c = lane * kVec; c < C; c += 32 * kVec) {
    float d[kVec], x[kVec], w[kVec];
    LoadVec<kVec>(dout + offset + c, d);
    LoadVec<kVec>(inp + offset + c, x);
    LoadVec<kVec>(weight + c, w);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float dnorm = w[i] * d[i];
      dnorm_sum += dnorm;
      dnorm_norm_sum += dnorm * ((x[i] - m) * s);
    }
  }
  const float dnorm_mean = WarpSum(dnorm_sum) / C;
  const float dnorm_norm_mean = WarpSum(dnorm_norm_sum) / C;

  for (int c = lane * kVec; c < C; c += 32 * kVec) {
    float d[kVec], x[kVec], w[kVec], dx[kVec];
    LoadVec<kVec>(dout + offset + c, d);
    LoadVec<kVec>(inp + offset + c, x);
    LoadVec<kVec>(weight + c, w);
    LoadVec<kVec>(dinp + offset + c, dx);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float norm = (x[i] - m) * s;
      dx[i] += (w[i] * d[i] - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
    StoreVec<kVec>(dinp + offset + c, dx);
  }
}

// f_0 = dout * xhat (dweight), f_1 = dout (dbias).
template <typename T, int kVec>
struct LayerNormParamContribution {
  const T* dout;
  const T* inp;
  const float* mean;
  const float* rstd;
  int C;
  __device__ __forceinline__ void operator()(int64_t row, int c, float (&v)[2][kVec]) const {
    float d[kVec], x[kVec];
    LoadVec<kVec>(dout + row * C + c, d);
    LoadVec<kVec>(inp + row * C + c, x);
    const float m = mean[row];
    const float s = rstd[row];
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      v[0][i] = d[i] * ((x[i] - m) * s);
      v[1][i] = d[i];
    }
  }
};

}  // namespace

void LayerNormForward(const LaunchContext& ctx, DType act, void* out, float* mean,
                      float* rstd, void* residual, const void* a, const void* b,
                      const void* weight, const void* bias, int64_t N, int C) {
  if (N == 0 || C == 0) return;
  const unsigned blocks = BlocksFor(N, kRowsPerBlock, INT32_MAX);
  DispatchFloat(act, "LayerNormForward", [&](auto tag) {
    using E = decltype(tag);
    constexpr int kVec = 16 / sizeof(E);
    const bool vec = C % kVec == 0 && Aligned16(out) && Aligned16(residual) &&
                     Aligned16(a) && Aligned16(b) && Aligned16(weight) && Aligned16(bias);
    auto kernel = residual != nullptr
                      ? (vec ? LayerNormForwardKernel<E, kVec, true>
                             : LayerNormForwardKernel<E, 1, true>)
                      : (vec ? LayerNormForwardKernel<E, kVec, false>
                             : LayerNormForwardKernel<E, 1, false>);
    COLOSSUS_LAUNCH(kernel, blocks, kRowsPerBlock * 32, ctx.stream,
        static_cast<E*>(out), mean, rstd, static_cast<E*>(residual), static_cast<const E*>(a),
        static_cast<const E*>(b), static_cast<const E*>(weight), static_cast<const E*>(bias),
        N, C);
    COLOSSUS_CUDA_CHECK_LAUNCH();
  });
}

void LayerNormBackward(const LaunchContext& ctx, DType act, void* dinp, float* dweight,
                       float* dbias, const void* dout, const void* inp, const void* weight,
                       const float* mean, const float* rstd, int64_t N, int C) {
  if (N == 0 || C == 0) return;
  DispatchFloat(act, "LayerNormBackward", [&](auto tag) {
    using E = decltype(tag);
    constexpr int kVec = 16 / sizeof(E);
    const E* d = static_cast<const E*>(dout);
    const E* x = static_cast<const E*>(inp);
    const bool vec = C % kVec == 0 && Aligned16(dinp) && Aligned16(dout) && Aligned16(inp) &&
                     Aligned16(weight);
    auto input_kernel =
        vec ? LayerNormBackwardInputKernel<E, kVec> : LayerNormBackwardInputKernel<E, 1>;
    COLOSSUS_LAUNCH(input_kernel, BlocksFor(N, kRowsPerBlock, INT32_MAX), kRowsPerBlock * 32,
                    ctx.stream, static_cast<E*>(dinp), d, x, static_cast<const E*>(weight), mean,
                    rstd, N, C);
    COLOSSUS_CUDA_CHECK_LAUNCH();
    float* const outs[2] = {dweight, dbias};
    if (vec) {
      LaunchColumnSums<kVec, 2>(ctx, outs, LayerNormParamContribution<E, kVec>{d, x, mean, rstd, C},
                                N, C);
    } else {
      LaunchColumnSums<1, 2>(ctx, outs, LayerNormParamContribution<E, 1>{d, x, mean, rstd, C},
                             N, C);
    }
  });
}

}  // namespace colossus::kernels::cuda
