// Reference attention kernels: the obviously-correct path. No tensor cores, no tiling,
// no online softmax; every number is computed in fp32 straight from its definition.
//
// One warp per row; lane l holds dims l, l+32, ... of that row (hs <= 256, so at most 8
// per lane), and dot products are an fp32 partial per lane plus a butterfly sum, which
// leaves the same bits in all 32 lanes. Inner loops run over the other sequence index
// and read K/V (or Q/dO) rows from global memory through L2; this is O(T^2 * hs) work
// with no reuse, fine for the f32 tests and the odd head size, slow for training.
//
//   forward   (per query t):  m = max_j s_tj;  l = sum_j exp(s_tj - m);
//                             out_t = sum_j exp(s_tj - m) v_j / l;  lse_t = m + log l
//   backward  (per query t):  delta_t = dO_t . O_t;
//                             dq_t = scale * sum_{j<=t} P_tj (dO_t . v_j - delta_t) k_j
//             (per key j):    dk_j = scale * sum_{t>=j} P_tj (dO_t . v_j - delta_t) q_t
//                             dv_j = sum_{t>=j} P_tj dO_t
// with s_tj = scale * q_t . k_j and P_tj = exp(s_tj - lse_t). The key pass reads the
// deltas the query pass wrote (stream order), so there are no atomics.
#pragma once

#include "cuda/attention_internal.cuh"

namespace colossus::kernels::cuda::attn {
namespace {

constexpr int kPerLane = kRefMaxHeadSize / 32;
constexpr int kRefWarpsPerBlock = 4;

__device__ __forceinline__ float ToF(float x) { return x; }
__device__ __forceinline__ float ToF(bf16 x) { return __bfloat162float(x); }
template <typename E>
__device__ __forceinline__ E FromF(float x);
template <>
__device__ __forceinline__ float FromF<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 FromF<bf16>(float x) {
  return __float2bfloat16_rn(x);
}

__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Reads this lane's dims of one row (zeros past hs).
template <typename E>
__device__ __forceinline__ void LoadRow(float (&v)[kPerLane], const E* row, int hs, int lane) {
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int d = lane + 32 * k;
    v[k] = d < hs ? ToF(row[d]) : 0.f;
  }
}

template <typename E>
__device__ __forceinline__ float Dot(const float (&a)[kPerLane], const E* row, int hs, int lane) {
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int d = lane + 32 * k;
    if (d < hs) sum = fmaf(a[k], ToF(row[d]), sum);
  }
  return WarpSum(sum);
}

template <typename E>
__device__ __forceinline__ void Axpy(float (&acc)[kPerLane], float alpha, const E* row, int hs,
                                     int lane) {
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int d = lane + 32 * k;
    if (d < hs) acc[k] = fmaf(alpha, ToF(row[d]), acc[k]);
  }
}

template <typename E>
__device__ __forceinline__ void StoreRow(E* row, const float (&v)[kPerLane], float mul, int hs,
                                         int lane) {
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int d = lane + 32 * k;
    if (d < hs) row[d] = FromF<E>(v[k] * mul);
  }
}

// Row index over [B, NH, T], t fastest; the (b, h, t) it names.
struct RowIndex {
  int b, h, t;
  int64_t bh;
};

__device__ __forceinline__ bool WarpRow(RowIndex& r, int B, int T, int NH) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRefWarpsPerBlock + threadIdx.x / 32;
  if (row >= static_cast<int64_t>(B) * NH * T) return false;
  r.t = static_cast<int>(row % T);
  r.bh = row / T;
  r.h = static_cast<int>(r.bh % NH);
  r.b = static_cast<int>(r.bh / NH);
  return true;
}

template <typename E>
__global__ void __launch_bounds__(32 * kRefWarpsPerBlock)
    ReferenceForwardKernel(E* __restrict__ out, float* __restrict__ lse, const E* __restrict__ qkv,
                           int B, int T, int NH, int hs, float scale) {
  RowIndex r;
  if (!WarpRow(r, B, T, NH)) return;
  const int lane = threadIdx.x % 32;
  const int64_t C = static_cast<int64_t>(NH) * hs, ld = 3 * C;
  const E* q_base = qkv + static_cast<int64_t>(r.b) * T * ld + static_cast<int64_t>(r.h) * hs;
  const E* k_base = q_base + C;
  const E* v_base = q_base + 2 * C;

  float q[kPerLane];
  LoadRow(q, q_base + r.t * ld, hs, lane);
  float m = -INFINITY;
  for (int j = 0; j <= r.t; ++j) m = fmaxf(m, scale * Dot(q, k_base + j * ld, hs, lane));
  float l = 0.f;
  float o[kPerLane] = {};
  for (int j = 0; j <= r.t; ++j) {
    const float p = expf(scale * Dot(q, k_base + j * ld, hs, lane) - m);
    l += p;
    Axpy(o, p, v_base + j * ld, hs, lane);
  }
  StoreRow(out + (static_cast<int64_t>(r.b) * T + r.t) * C + static_cast<int64_t>(r.h) * hs, o,
           1.f / l, hs, lane);
  if (lane == 0) lse[r.bh * T + r.t] = m + logf(l);
}

template <typename E>
__global__ void __launch_bounds__(32 * kRefWarpsPerBlock)
    ReferenceBackwardQueryKernel(E* __restrict__ dqkv, float* __restrict__ delta,
                                 const E* __restrict__ dout, const E* __restrict__ qkv,
                                 const E* __restrict__ out, const float* __restrict__ lse, int B,
                                 int T, int NH, int hs, float scale) {
  RowIndex r;
  if (!WarpRow(r, B, T, NH)) return;
  const int lane = threadIdx.x % 32;
  const int64_t C = static_cast<int64_t>(NH) * hs, ld = 3 * C;
  const int64_t head = static_cast<int64_t>(r.h) * hs;
  const E* q_base = qkv + static_cast<int64_t>(r.b) * T * ld + head;
  const E* k_base = q_base + C;
  const E* v_base = q_base + 2 * C;
  const int64_t orow = (static_cast<int64_t>(r.b) * T + r.t) * C + head;

  float q[kPerLane], dO[kPerLane], o[kPerLane];
  LoadRow(q, q_base + r.t * ld, hs, lane);
  LoadRow(dO, dout + orow, hs, lane);
  LoadRow(o, out + orow, hs, lane);
  float dsum = 0.f;
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) dsum = fmaf(dO[k], o[k], dsum);
  const float d_t = WarpSum(dsum);
  if (lane == 0) delta[r.bh * T + r.t] = d_t;

  const float lse_t = lse[r.bh * T + r.t];
  float dq[kPerLane] = {};
  for (int j = 0; j <= r.t; ++j) {
    const float p = expf(scale * Dot(q, k_base + j * ld, hs, lane) - lse_t);
    const float ds = p * (Dot(dO, v_base + j * ld, hs, lane) - d_t);
    Axpy(dq, ds, k_base + j * ld, hs, lane);
  }
  StoreRow(dqkv + (static_cast<int64_t>(r.b) * T + r.t) * ld + head, dq, scale, hs, lane);
}

template <typename E>
__global__ void __launch_bounds__(32 * kRefWarpsPerBlock)
    ReferenceBackwardKeyKernel(E* __restrict__ dqkv, const float* __restrict__ delta,
                               const E* __restrict__ dout, const E* __restrict__ qkv,
                               const float* __restrict__ lse, int B, int T, int NH, int hs,
                               float scale) {
  RowIndex r;  // r.t is the key index here
  if (!WarpRow(r, B, T, NH)) return;
  const int lane = threadIdx.x % 32;
  const int64_t C = static_cast<int64_t>(NH) * hs, ld = 3 * C;
  const int64_t head = static_cast<int64_t>(r.h) * hs;
  const E* q_base = qkv + static_cast<int64_t>(r.b) * T * ld + head;
  const E* do_base = dout + static_cast<int64_t>(r.b) * T * C + head;
  const float* lse_bh = lse + r.bh * T;
  const float* delta_bh = delta + r.bh * T;

  float k[kPerLane], v[kPerLane];
  LoadRow(k, q_base + C + r.t * ld, hs, lane);
  LoadRow(v, q_base + 2 * C + r.t * ld, hs, lane);
  float dk[kPerLane] = {}, dv[kPerLane] = {};
  for (int t = r.t; t < T; ++t) {
    const E* q_row = q_base + t * ld;
    const E* do_row = do_base + t * C;
    const float p = expf(scale * Dot(k, q_row, hs, lane) - lse_bh[t]);
    const float ds = p * (Dot(v, do_row, hs, lane) - delta_bh[t]);
    Axpy(dk, ds, q_row, hs, lane);
    Axpy(dv, p, do_row, hs, lane);
  }
  E* dk_row = dqkv + (static_cast<int64_t>(r.b) * T + r.t) * ld + C + head;
  StoreRow(dk_row, dk, scale, hs, lane);
  StoreRow(dk_row + C, dv, 1.f, hs, lane);
}

}  // namespace
}  // namespace colossus::kernels::cuda::attn
