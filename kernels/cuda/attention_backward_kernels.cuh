// FlashAttention-2 backward, causal, bf16 in / fp32 accumulate, mma.sync.m16n8k16.
//
// Three steps, all on the caller's stream:
//   1. delta[b,h,t] = sum_d dO[b,t,h,d] * O[b,t,h,d] (DeltaKernel), and dq_accum = 0.
//      delta is the softmax-backward row term: dS = P o (dP - delta), since
//      sum_j P_ij dP_ij = dO_i . (sum_j P_ij V_j) = dO_i . O_i.
//   2. FlashBackwardKernel: one block per (batch, head, tile of kBc = 64 keys); each of
//      its 4 warps owns 16 keys and keeps their dK and dV rows in registers for the whole
//      kernel. The block walks query tiles of kBr rows from the diagonal to the end:
//        S^T  = K Q^T,   P^T = exp2(S^T*scale*log2e - lse*log2e)   (masked)
//        dP^T = V dO^T,  dS^T = P^T o (dP^T - delta)
//        dV += P^T dO,   dK += dS^T Q           (A operands straight from registers)
//        dQ[q tile] += dS K                     (dS through shared memory, then fp32
//                                                atomics into dq_accum)
//      Working on transposed scores puts keys on the MMA's M side, so the per-warp dK
//      and dV accumulators need no cross-warp reduction; the price is dQ, whose sum over
//      keys crosses blocks, hence the fp32 atomics (as in FA2).
//   3. DqConvertKernel: dqkv's query part = bf16(scale * dq_accum).
//
// Query tiles are double-buffered (Q, dO, lse, delta for tile i+1 load while tile i
// computes). kBr = 64 for D = 64; for D = 128 it is 32, which keeps S^T and dP^T at 16
// registers each next to the 128 of dK and dV (64 would not fit in 255 without spills).
// ptxas (CUDA 13.0, sm_90a): 254 registers for D = 128, 240 for D = 64, no spills;
// shared memory 73.5 KB and 64 KB; 2 blocks per SM.
#pragma once

#include "cuda/attention_internal.cuh"

namespace colossus::kernels::cuda::attn {

template <int D>
struct BwdTile {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBc = 16 * kWarps;        // keys per block: 16 per warp
  static constexpr int kBr = D == 64 ? 64 : 32;  // queries per inner tile
  static constexpr int kStride = D + 8;          // +16 bytes: conflict-free ldmatrix
  static constexpr int kSdsStride = kBr + 8;     // dS^T rows, same reason
  // dQ = dS K splits over warps as kRowGroups groups of 16 query rows x kColSplit slices
  // of the head dim, kDq wide.
  static constexpr int kRowGroups = kBr / 16;
  static constexpr int kColSplit = kWarps / kRowGroups;
  static constexpr int kDq = D / kColSplit;
  static_assert(kRowGroups * kColSplit == kWarps && kDq % 16 == 0, "dQ split");
  static_assert(kBc % kBr == 0, "the first query tile of a key tile must start at kv0");

  // Shared memory layout (bytes, each piece a multiple of 16):
  static constexpr int kKV = kBc * kStride;     // elements of sK, of sV
  static constexpr int kQO = kBr * kStride;     // elements of one stage of sQ, of sdO
  static constexpr int kDS = kBc * kSdsStride;  // elements of sdS
  static constexpr size_t kBf16Bytes = (2 * kKV + 4 * kQO + kDS) * sizeof(bf16);
  static constexpr size_t kSmemBytes = kBf16Bytes + 4 * kBr * sizeof(float);
  static_assert(kBf16Bytes % 16 == 0, "float arrays follow 16-byte aligned");
};

// One warp per (b, t, h) row of the [B,T,NH,D] out/dout layout; D even.
static __global__ void DeltaKernel(float* __restrict__ delta, const bf16* __restrict__ dout,
                                   const bf16* __restrict__ out, int64_t rows, int T, int NH,
                                   int D) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const __nv_bfloat162* d2 = reinterpret_cast<const __nv_bfloat162*>(dout + row * D);
  const __nv_bfloat162* o2 = reinterpret_cast<const __nv_bfloat162*>(out + row * D);
  float sum = 0.f;
  for (int i = lane; i < D / 2; i += 32) {
    const float2 a = __bfloat1622float2(d2[i]);
    const float2 c = __bfloat1622float2(o2[i]);
    sum = fmaf(a.x, c.x, fmaf(a.y, c.y, sum));
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) {
    const int h = static_cast<int>(row % NH);
    const int64_t bt = row / NH;  // b*T + t
    const int t = static_cast<int>(bt % T);
    const int64_t b = bt / T;
    delta[(b * NH + h) * T + t] = sum;
  }
}

// dqkv[b,t,0,:,:] = bf16(scale * dq_accum[b,t,:]), two elements per thread; C even.
static __global__ void DqConvertKernel(bf16* __restrict__ dqkv, const float* __restrict__ dq_accum,
                                       int64_t rows, int C, float scale) {
  const int half = C / 2;
  const int64_t n = rows * half;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / half;
    const int c = static_cast<int>(i % half) * 2;
    const float2 v = reinterpret_cast<const float2*>(dq_accum)[i];
    *reinterpret_cast<uint32_t*>(dqkv + row * 3 * C + c) = PackBf16(v.x * scale, v.y * scale);
  }
}

// grid = (B*NH, ceil(T / kBc)); key tile blockIdx.y. Tile 0 sees every query tile and
// so is the longest: low y first is longest first.
template <int D>
__global__ void __launch_bounds__(BwdTile<D>::kThreads)
    FlashBackwardKernel(bf16* __restrict__ dqkv, float* __restrict__ dq_accum,
                        const bf16* __restrict__ dout, const bf16* __restrict__ qkv,
                        const float* __restrict__ lse, const float* __restrict__ delta, int T,
                        int NH, float scale_log2, float scale) {
  using Cfg = BwdTile<D>;
  constexpr int kBr = Cfg::kBr, kBc = Cfg::kBc, kStride = Cfg::kStride;
  constexpr int kSdsStride = Cfg::kSdsStride, kThreads = Cfg::kThreads;
  COLOSSUS_ATTN_DYNAMIC_SMEM(smem_raw);
  bf16* sK = reinterpret_cast<bf16*>(smem_raw);
  bf16* sV = sK + Cfg::kKV;
  bf16* sQ = sV + Cfg::kKV;        // [2][kBr][kStride]
  bf16* sdO = sQ + 2 * Cfg::kQO;   // [2][kBr][kStride]
  bf16* sdS = sdO + 2 * Cfg::kQO;  // [kBc][kSdsStride]: dS^T, keys x queries
  float* sLse = reinterpret_cast<float*>(smem_raw + Cfg::kBf16Bytes);  // [2][kBr]
  float* sDelta = sLse + 2 * kBr;                                      // [2][kBr]

  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const int bh = blockIdx.x;
  const int b = bh / NH, h = bh % NH;
  const int kv0 = blockIdx.y * kBc;
  const int64_t C = static_cast<int64_t>(NH) * D;
  const int64_t ld = 3 * C;
  const int64_t head_off = static_cast<int64_t>(h) * D;
  const bf16* gQ = qkv + static_cast<int64_t>(b) * T * ld + head_off;
  const bf16* gK = gQ + C;
  const bf16* gV = gQ + 2 * C;
  const bf16* gdO = dout + static_cast<int64_t>(b) * T * C + head_off;
  const float* gLse = lse + static_cast<int64_t>(bh) * T;
  const float* gDelta = delta + static_cast<int64_t>(bh) * T;

  auto load_query_tile = [&](int stage, int i) {
    const int q0 = i * kBr;
    LoadTileAsync<kBr, D, kStride, kThreads>(sQ + stage * Cfg::kQO, gQ, q0, T, ld, tid);
    LoadTileAsync<kBr, D, kStride, kThreads>(sdO + stage * Cfg::kQO, gdO, q0, T, C, tid);
    LoadRowStatsAsync<kBr>(sLse + stage * kBr, gLse, q0, T, tid);
    LoadRowStatsAsync<kBr>(sDelta + stage * kBr, gDelta, q0, T, tid);
  };

  // Queries before kv0 see none of these keys: start at the tile holding query kv0.
  const int i0 = kv0 / kBr;
  const int n_q = (T + kBr - 1) / kBr;
  LoadTileAsync<kBc, D, kStride, kThreads>(sK, gK, kv0, T, ld, tid);
  LoadTileAsync<kBc, D, kStride, kThreads>(sV, gV, kv0, T, ld, tid);
  load_query_tile(0, i0);
  CpAsyncCommit();

  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) {
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[dn][e] = dv[dn][e] = 0.f;
  }
  const int key_row = warp * 16 + lane / 4;  // this lane's first key in the tile; +8 second

  for (int i = i0; i < n_q; ++i) {
    const int st = (i - i0) & 1;
    // Stage st^1 was last read in iteration i-1, before its mid-iteration barrier.
    if (i + 1 < n_q) {
      load_query_tile(st ^ 1, i + 1);
      CpAsyncCommit();
      CpAsyncWait<1>();  // everything but tile i+1 has landed
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    const bf16* cQ = sQ + st * Cfg::kQO;
    const bf16* cdO = sdO + st * Cfg::kQO;
    const float* cLse = sLse + st * kBr;
    const float* cDelta = sDelta + st * kBr;
    const int q0 = i * kBr;

    // S^T = K Q^T and dP^T = V dO^T, [16 keys x kBr queries] per warp. A = this warp's K
    // (V) rows, as Q in the forward; B[k = dim][n = query] = Q[query][dim] (dO), rows as
    // stored, as K in the forward.
    float sT[kBr / 8][4], dpT[kBr / 8][4];
#pragma unroll
    for (int n = 0; n < kBr / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) sT[n][e] = dpT[n][e] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[4], va[4];
      const int a_off = (warp * 16 + lane % 16) * kStride + kk * 16 + (lane / 16) * 8;
      LdMatrixX4(ka, SmemAddr(sK + a_off));
      LdMatrixX4(va, SmemAddr(sV + a_off));
#pragma unroll
      for (int nn = 0; nn < kBr / 16; ++nn) {
        uint32_t qb[4], ob[4];
        const int b_off =
            (nn * 16 + lane % 8 + (lane / 16) * 8) * kStride + kk * 16 + ((lane / 8) % 2) * 8;
        LdMatrixX4(qb, SmemAddr(cQ + b_off));
        LdMatrixX4(ob, SmemAddr(cdO + b_off));
        Mma(sT[2 * nn], ka, qb[0], qb[1]);
        Mma(sT[2 * nn + 1], ka, qb[2], qb[3]);
        Mma(dpT[2 * nn], va, ob[0], ob[1]);
        Mma(dpT[2 * nn + 1], va, ob[2], ob[3]);
      }
    }

    // P^T and dS^T in place. Masked: keys after the query (causal), and queries >= T,
    // whose zero-filled Q and lse would otherwise give P = exp(0) = 1. Keys >= T are
    // after every valid query, so the causal test covers them.
    const bool need_mask = q0 < kv0 + kBc - 1 || q0 + kBr > T;
#pragma unroll
    for (int n = 0; n < kBr / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qcol = n * 8 + 2 * (lane % 4) + (e & 1);
        float p = exp2f(fmaf(sT[n][e], scale_log2, -LoadSharedF32(cLse + qcol) * kLog2e));
        if (need_mask) {
          const int key = kv0 + key_row + (e / 2) * 8;
          const int query = q0 + qcol;
          if (key > query || query >= T) p = 0.f;
        }
        sT[n][e] = p;
        dpT[n][e] = p * (dpT[n][e] - LoadSharedF32(cDelta + qcol));
      }
    }

    // dV += P^T dO and dK += dS^T Q. A from registers (C layout of n-tiles 2kk, 2kk+1 =
    // A layout of k-slice kk); B[k = query][n = dim] = dO[query][dim] (Q): transposed
    // loads, addressed as V in the forward.
#pragma unroll
    for (int kk = 0; kk < kBr / 16; ++kk) {
      const uint32_t pa[4] = {PackBf16(sT[2 * kk][0], sT[2 * kk][1]),
                              PackBf16(sT[2 * kk][2], sT[2 * kk][3]),
                              PackBf16(sT[2 * kk + 1][0], sT[2 * kk + 1][1]),
                              PackBf16(sT[2 * kk + 1][2], sT[2 * kk + 1][3])};
      const uint32_t da[4] = {PackBf16(dpT[2 * kk][0], dpT[2 * kk][1]),
                              PackBf16(dpT[2 * kk][2], dpT[2 * kk][3]),
                              PackBf16(dpT[2 * kk + 1][0], dpT[2 * kk + 1][1]),
                              PackBf16(dpT[2 * kk + 1][2], dpT[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t ob[4], qb[4];
        const int off =
            (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride + dn * 16 + (lane / 16) * 8;
        LdMatrixX4Trans(ob, SmemAddr(cdO + off));
        LdMatrixX4Trans(qb, SmemAddr(cQ + off));
        Mma(dv[2 * dn], pa, ob[0], ob[1]);
        Mma(dv[2 * dn + 1], pa, ob[2], ob[3]);
        Mma(dk[2 * dn], da, qb[0], qb[1]);
        Mma(dk[2 * dn + 1], da, qb[2], qb[3]);
      }
      // dS^T (bf16) to shared memory for the dQ product below: rows = keys,
      // cols = queries, exactly this lane's C fragment positions.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        bf16* dst = sdS + (key_row + 8 * r) * kSdsStride + kk * 16 + 2 * (lane % 4);
        StoreShared32(dst, da[r]);          // queries kk*16 + 2t, +1
        StoreShared32(dst + 8, da[2 + r]);  // queries kk*16 + 8 + 2t, +1
      }
    }
    // sdS is complete, and every warp is past its reads of stage st (Q, dO, lse, delta),
    // which the next iteration refills with tile i+2.
    __syncthreads();

    // dQ[q0 + rg*16 .. +16][cs*kDq .. +kDq] = dS K over this block's kBc keys.
    // A[query][key] = dS^T[key][query]: transposed loads, lane l addressing key
    // kk*16 + l%8 + (l/16)*8 and query rg*16 + ((l/8)%2)*8 (the four 8x8 quarters in
    // A-register order). B[k = key][n = dim] = K[key][dim]: transposed, as V above.
    {
      constexpr int kDq = Cfg::kDq;
      const int rg = warp % Cfg::kRowGroups;
      const int cs = warp / Cfg::kRowGroups;
      float dq[kDq / 8][4];
#pragma unroll
      for (int dn = 0; dn < kDq / 8; ++dn) dq[dn][0] = dq[dn][1] = dq[dn][2] = dq[dn][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kBc / 16; ++kk) {
        uint32_t a[4];
        LdMatrixX4Trans(a, SmemAddr(sdS + (kk * 16 + lane % 8 + (lane / 16) * 8) * kSdsStride +
                                    rg * 16 + ((lane / 8) % 2) * 8));
#pragma unroll
        for (int dn = 0; dn < kDq / 16; ++dn) {
          uint32_t kb[4];
          LdMatrixX4Trans(kb, SmemAddr(sK + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride +
                                       cs * kDq + dn * 16 + (lane / 16) * 8));
          Mma(dq[2 * dn], a, kb[0], kb[1]);
          Mma(dq[2 * dn + 1], a, kb[2], kb[3]);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int query = q0 + rg * 16 + lane / 4 + 8 * r;
        if (query < T) {
          float* dst = dq_accum + (static_cast<int64_t>(b) * T + query) * C + head_off + cs * kDq +
                       2 * (lane % 4);
#pragma unroll
          for (int dn = 0; dn < kDq / 8; ++dn)
            AtomicAdd2(dst + dn * 8, dq[dn][2 * r], dq[dn][2 * r + 1]);
        }
      }
    }
    // No barrier here: the next iteration's first barrier orders these sdS reads before
    // its sdS writes, and its cp.async targets stage st, last read before the barrier
    // above.
  }

  // dK (scaled: S = scale * Q K^T) and dV for this lane's two keys.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = kv0 + key_row + 8 * r;
    if (key < T) {
      bf16* dk_row =
          dqkv + (static_cast<int64_t>(b) * T + key) * ld + C + head_off + 2 * (lane % 4);
      bf16* dv_row = dk_row + C;
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) {
        *reinterpret_cast<uint32_t*>(dk_row + dn * 8) =
            PackBf16(dk[dn][2 * r] * scale, dk[dn][2 * r + 1] * scale);
        *reinterpret_cast<uint32_t*>(dv_row + dn * 8) = PackBf16(dv[dn][2 * r], dv[dn][2 * r + 1]);
      }
    }
  }
}

}  // namespace colossus::kernels::cuda::attn
