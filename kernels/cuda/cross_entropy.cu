// Fused softmax + cross-entropy over the first V of Vp logit columns, forward and
// backward; the probabilities are never written out.
//
// Forward, one 256-thread block per row: each thread runs an online softmax (running
// max m and sum s of exp(x - m)) over its strided share of the row's V logits, reading
// the row once (16-byte vectors over the first V - V % kVec columns when the row
// allows, single elements for the rest); the block then merges the (m, s) pairs with
// shuffles and shared memory. lse = m + log s; loss = lse - logit[target]. A row of
// GPT-2's vocabulary is ~100 KB in bf16, so a block per row gives each SM a few rows
// in flight and every load is coalesced.
//
// Backward, one 256-thread block per row: dlogits = dloss * (exp(x - lse) - onehot) on
// columns < V, 0 on the padding columns, written over the whole padded row (vectors
// over all Vp columns when Vp % kVec == 0; a padding column's logit is read but never
// used). dlogits may alias logits: every element is read and then written by the same
// thread.
//
// Rows with a negative target are ignored (loss 0, gradient 0, lse still written). A
// target >= V is a caller bug the device cannot report: its loss and its gradient row
// are NaN, so training fails visibly.
#include <cmath>

#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {
namespace {

constexpr int kCrossEntropyThreads = 256;

// Merges the softmax state (om, os) into (m, s). An empty state has m = -inf, s = 0;
// merging two empty states leaves it empty (no exp(-inf - -inf) = NaN). A NaN logit
// makes s NaN for good (fmaxf alone would drop it from the max and lose it).
__device__ __forceinline__ void Merge(float& m, float& s, float om, float os) {
  if (isnan(s)) return;  // already poisoned
  if (isnan(om) || isnan(os)) {
    s = NAN;
    return;
  }
  const float nm = fmaxf(m, om);
  if (nm == -INFINITY) return;
  const float a = m == -INFINITY ? 0.0f : s * expf(m - nm);
  const float b = om == -INFINITY ? 0.0f : os * expf(om - nm);
  m = nm;
  s = a + b;
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kCrossEntropyThreads)
    CrossEntropyForwardKernel(float* __restrict__ losses, float* __restrict__ lse,
                              const T* __restrict__ logits, const int32_t* __restrict__ targets,
                              int V, int Vp) {
  __shared__ float shared_m[kCrossEntropyThreads / 32];
  __shared__ float shared_s[kCrossEntropyThreads / 32];
  const int64_t row = blockIdx.x;
  const T* x = logits + row * Vp;

  float m = -INFINITY, s = 0.0f;
  const int groups = V / kVec;
  for (int g = threadIdx.x; g < groups; g += kCrossEntropyThreads) {
    float v[kVec];
    LoadVec<kVec>(x + g * kVec, v);
    float gm = v[0];
#pragma unroll
    for (int i = 1; i < kVec; ++i) gm = fmaxf(gm, v[i]);
    float gs = 0.0f;
#pragma unroll
    for (int i = 0; i < kVec; ++i) gs += expf(v[i] - gm);
    Merge(m, s, gm, gs);
  }
  for (int j = groups * kVec + threadIdx.x; j < V; j += kCrossEntropyThreads) {
    Merge(m, s, ToFloat(x[j]), 1.0f);
  }

  for (int offset = 16; offset > 0; offset >>= 1) {
    const float om = __shfl_xor_sync(kFullMask, m, offset);
    const float os = __shfl_xor_sync(kFullMask, s, offset);
    Merge(m, s, om, os);
  }
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) {
    shared_m[warp] = m;
    shared_s[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // In warp order: the result does not depend on timing.
    float bm = shared_m[0], bs = shared_s[0];
    for (int w = 1; w < kCrossEntropyThreads / 32; ++w) Merge(bm, bs, shared_m[w], shared_s[w]);
    const float l = bm + logf(bs);
    lse[row] = l;
    const int32_t target = targets[row];
    if (target < 0) {
      losses[row] = 0.0f;
    } else if (target >= V) {
      losses[row] = NAN;
    } else {
      losses[row] = l - ToFloat(x[target]);
    }
  }
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kCrossEntropyThreads)
    CrossEntropyBackwardKernel(T* dlogits, const T* logits, const float* __restrict__ lse,
                               const int32_t* __restrict__ targets, float dloss, int V,
                               int Vp) {
  const int64_t row = blockIdx.x;
  const T* x = logits + row * Vp;
  T* dx = dlogits + row * Vp;
  const int32_t target = targets[row];
  const float l = lse[row];
  const bool ignore = target < 0;
  const bool bad = target >= V;
  const int groups = Vp / kVec;
  for (int g = threadIdx.x; g < groups; g += kCrossEntropyThreads) {
    const int j0 = g * kVec;
    float v[kVec];
    LoadVec<kVec>(x + j0, v);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const int j = j0 + i;
      float grad;
      if (ignore || j >= V) {
        grad = 0.0f;
      } else if (bad) {
        grad = NAN;
      } else {
        grad = dloss * (j == target ? expf(v[i] - l) - 1.0f : expf(v[i] - l));
      }
      v[i] = grad;
    }
    StoreVec<kVec>(dx + j0, v);
  }
  // Vp % kVec == 0 whenever kVec > 1, so this covers nothing then; with kVec == 1 the
  // loop above already covered the row. Kept for the invariant "every column written".
  for (int j = groups * kVec + threadIdx.x; j < Vp; j += kCrossEntropyThreads) {
    const float v = ToFloat(x[j]);
    float grad;
    if (ignore || j >= V) {
      grad = 0.0f;
    } else if (bad) {
      grad = NAN;
    } else {
      grad = dloss * (j == target ? expf(v - l) - 1.0f : expf(v - l));
    }
    dx[j] = FromFloat<T>(grad);
  }
}

}  // namespace

void CrossEntropyForward(const LaunchContext& ctx, DType act, float* losses, float* lse,
                         const void* logits, const int32_t* targets, int64_t N, int V,
                         int Vp) {
  if (N == 0) return;
  CHECK(N <= INT32_MAX) << "CrossEntropyForward: N = " << N << " rows exceed the grid";
  DispatchFloat(act, "CrossEntropyForward", [&](auto tag) {
    using E = decltype(tag);
    constexpr int kVec = 16 / sizeof(E);
    // Row starts are 16-byte aligned when the base is and Vp * sizeof(E) is.
    const bool vec = Vp % kVec == 0 && Aligned16(logits);
    auto kernel = vec ? CrossEntropyForwardKernel<E, kVec> : CrossEntropyForwardKernel<E, 1>;
    COLOSSUS_LAUNCH(kernel, static_cast<unsigned>(N), kCrossEntropyThreads, ctx.stream,
        losses, lse, static_cast<const E*>(logits), targets, V, Vp);
    COLOSSUS_CUDA_CHECK_LAUNCH();
  });
}

void CrossEntropyBackward(const LaunchContext& ctx, DType act, void* dlogits,
                          const void* logits, const float* lse, const int32_t* targets,
                          float dloss, int64_t N, int V, int Vp) {
  if (N == 0) return;
  CHECK(N <= INT32_MAX) << "CrossEntropyBackward: N = " << N << " rows exceed the grid";
  DispatchFloat(act, "CrossEntropyBackward", [&](auto tag) {
    using E = decltype(tag);
    constexpr int kVec = 16 / sizeof(E);
    const bool vec = Vp % kVec == 0 && Aligned16(logits) && Aligned16(dlogits);
    auto kernel = vec ? CrossEntropyBackwardKernel<E, kVec> : CrossEntropyBackwardKernel<E, 1>;
    COLOSSUS_LAUNCH(kernel, static_cast<unsigned>(N), kCrossEntropyThreads, ctx.stream,
        static_cast<E*>(dlogits), static_cast<const E*>(logits), lse, targets, dloss, V, Vp);
    COLOSSUS_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace colossus::kernels::cuda
