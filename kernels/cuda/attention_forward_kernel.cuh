// FlashAttention-2 forward, causal, bf16 in / fp32 accumulate, tensor cores through
// mma.sync.m16n8k16 (see attention_internal.cuh for the fragment layouts).
//
// One block computes kBr = 64 queries of one (batch, head); each of its 4 warps owns 16
// query rows for the whole kernel, so a row's softmax statistics (max m, sum l) and its
// output accumulator live in that warp's registers and need only quad shuffles. The block
// walks key/value tiles of kBc = 64 keys from 0 up to the diagonal:
//   S = Q K^T (fp32), mask the diagonal tile, m_new = max(m, rowmax S),
//   P = exp2(S*scale*log2e - m_new), l = l*alpha + rowsum P, O = O*alpha + P V
// with alpha = exp2(m - m_new); P goes from the S accumulators straight into A fragments
// (the m16n8 C layout of two adjacent n-tiles is the m16k16 A layout), so it never
// touches shared memory. At the end O /= l and lse = (m + log2 l) * ln 2.
//
// Shared memory holds Q, one K tile and one V tile (rows padded by 16 bytes so the 8 row
// addresses of each ldmatrix phase fall in 8 different bank quads). Copies overlap
// compute as in FA2: V_j is loaded while S = Q K_j^T runs, K_{j+1} while softmax and
// P V_j run. 64+64+64 rows x (D+8) x 2 B = 27 KB for D = 64, 51 KB for D = 128.
//
// Registers per thread (D = 128): Q fragments 32, O 64, S 32, plus m, l, addresses and
// the K/V fragments in flight. ptxas (CUDA 13.0, sm_90a): 238 registers for D = 128, 134
// for D = 64, no spills; so 2 and 3 blocks per SM.
#pragma once

#include "cuda/attention_internal.cuh"

namespace colossus::kernels::cuda::attn {

template <int D>
struct FwdTile {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBr = 16 * kWarps;  // queries per block: 16 per warp
  static constexpr int kBc = 64;           // keys per tile
  static constexpr int kStride = D + 8;    // shared row stride in elements (+16 bytes)
  static constexpr size_t kSmemBytes = static_cast<size_t>(kBr + 2 * kBc) * kStride * sizeof(bf16);
};

// grid = (B*NH, ceil(T / kBr)); blockIdx.y counts query tiles from the LAST one, so the
// blocks with the most key tiles start first and the short ones fill in the tail.
template <int D>
__global__ void __launch_bounds__(FwdTile<D>::kThreads)
    FlashForwardKernel(bf16* __restrict__ out, float* __restrict__ lse,
                       const bf16* __restrict__ qkv, int T, int NH, float scale_log2) {
  using Cfg = FwdTile<D>;
  constexpr int kBr = Cfg::kBr, kBc = Cfg::kBc, kStride = Cfg::kStride;
  constexpr int kThreads = Cfg::kThreads;
  COLOSSUS_ATTN_DYNAMIC_SMEM(smem_raw);
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);
  bf16* sK = sQ + kBr * kStride;
  bf16* sV = sK + kBc * kStride;

  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const int bh = blockIdx.x;
  const int b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kBr;
  const int64_t C = static_cast<int64_t>(NH) * D;
  const int64_t ld = 3 * C;  // qkv row stride
  const bf16* gQ = qkv + static_cast<int64_t>(b) * T * ld + static_cast<int64_t>(h) * D;
  const bf16* gK = gQ + C;
  const bf16* gV = gQ + 2 * C;

  LoadTileAsync<kBr, D, kStride, kThreads>(sQ, gQ, q0, T, ld, tid);
  LoadTileAsync<kBc, D, kStride, kThreads>(sK, gK, 0, T, ld, tid);
  CpAsyncCommit();
  CpAsyncWait<0>();
  __syncthreads();

  // This warp's 16 query rows as A fragments, one per 16-wide slice of the head dim.
  // Lane l addresses row l % 16, column half l / 16: matrices 0..3 = the four 8x8
  // quarters in A-register order.
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    LdMatrixX4(qf[kk],
               SmemAddr(sQ + (warp * 16 + lane % 16) * kStride + kk * 16 + (lane / 16) * 8));
  }

  float o[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.f;
  // Row r = 0 is query q0 + warp*16 + lane/4, r = 1 is 8 rows further. m is in the
  // log2 domain of the scaled scores; l is this lane's partial row sum (its 2 of every 8
  // columns); the quad's partials are added once, at the end, since all four lanes apply
  // the same rescaling alpha.
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.f, 0.f};
  const int row_in_tile = warp * 16 + lane / 4;

  const int kv_end = min(T, q0 + kBr);
  const int n_kv = (kv_end + kBc - 1) / kBc;
  for (int j = 0; j < n_kv; ++j) {
    const int kv0 = j * kBc;
    // Safe: the barrier that ended the previous iteration follows every warp's P V reads.
    LoadTileAsync<kBc, D, kStride, kThreads>(sV, gV, kv0, T, ld, tid);
    CpAsyncCommit();

    // S = Q K^T: B[k = dim][n = key] = K[key][dim], i.e. K's rows as stored, no transpose.
    // Lane l addresses key nn*16 + l%8 + (l/16)*8 and dim kk*16 + ((l/8)%2)*8, so
    // registers 0,1 are the B fragment of keys nn*16..+7 and 2,3 of keys nn*16+8..+15.
    float s[kBc / 8][4];
#pragma unroll
    for (int n = 0; n < kBc / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int nn = 0; nn < kBc / 16; ++nn) {
        uint32_t kb[4];
        LdMatrixX4(kb, SmemAddr(sK + (nn * 16 + lane % 8 + (lane / 16) * 8) * kStride + kk * 16 +
                                ((lane / 8) % 2) * 8));
        Mma(s[2 * nn], qf[kk], kb[0], kb[1]);
        Mma(s[2 * nn + 1], qf[kk], kb[2], kb[3]);
      }
    }

    // Causal mask where the tile reaches past the block's first query. Keys >= T need no
    // mask of their own: for every stored query t < T they are > t.
    if (kv0 + kBc - 1 > q0) {
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = kv0 + n * 8 + 2 * (lane % 4) + (e & 1);
          const int query = q0 + row_in_tile + (e / 2) * 8;
          if (key > query) s[n][e] = -INFINITY;
        }
      }
    }

    CpAsyncWait<0>();  // V_j has landed (for this thread's copies) ...
    __syncthreads();   // ... for everyone's, and every warp is done reading K_j.
    if (j + 1 < n_kv) {
      LoadTileAsync<kBc, D, kStride, kThreads>(sK, gK, kv0 + kBc, T, ld, tid);
      CpAsyncCommit();
    }

    // Online softmax. Tile 0 always holds key 0 <= every query, so after it m is finite;
    // the -inf guard only keeps exp2(-inf - -inf) = NaN out of a row whose keys so far
    // are all masked, which this tiling never produces but costs one select.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = QuadMax(mx);
      const float m_new = fmaxf(m[r], mx * scale_log2);
      const float m_ref = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = exp2f(m[r] - m_ref);
      m[r] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n) {
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; ++e) {
          const float p = exp2f(fmaf(s[n][e], scale_log2, -m_ref));
          s[n][e] = p;
          sum += p;
        }
      }
      l[r] = l[r] * alpha + sum;
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) {
        o[dn][2 * r] *= alpha;
        o[dn][2 * r + 1] *= alpha;
      }
    }

    // O += P V. A = P from registers: n-tiles 2kk and 2kk+1 of S form the kk-th 16-wide
    // k-slice. B[k = key][n = dim] = V[key][dim] needs two consecutive keys per register,
    // i.e. V transposed: ldmatrix.trans, lane l addressing key kk*16 + l%8 + ((l/8)%2)*8
    // and dim dn*16 + (l/16)*8 (registers 0,1: dims dn*16..+7; 2,3: dims +8..+15).
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      const uint32_t pa[4] = {PackBf16(s[2 * kk][0], s[2 * kk][1]),
                              PackBf16(s[2 * kk][2], s[2 * kk][3]),
                              PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t vb[4];
        LdMatrixX4Trans(vb, SmemAddr(sV + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride +
                                     dn * 16 + (lane / 16) * 8));
        Mma(o[2 * dn], pa, vb[0], vb[1]);
        Mma(o[2 * dn + 1], pa, vb[2], vb[3]);
      }
    }

    CpAsyncWait<0>();  // K_{j+1} has landed ...
    __syncthreads();   // ... for everyone's copies, and every warp is done reading V_j.
  }

  // Epilogue: normalise and store this lane's columns of its two rows. Direct 4-byte
  // stores (a quad writes 16 contiguous bytes); the output is T*D per head against T^2*D
  // work, so staging it through shared memory would not pay.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float sum = QuadSum(l[r]);
    const int query = q0 + row_in_tile + 8 * r;
    if (query < T) {
      const float inv = 1.f / sum;  // sum >= 1: the row's maximum contributes exp2(0)
      bf16* orow = out + (static_cast<int64_t>(b) * T + query) * C + static_cast<int64_t>(h) * D +
                   2 * (lane % 4);
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) {
        *reinterpret_cast<uint32_t*>(orow + dn * 8) =
            PackBf16(o[dn][2 * r] * inv, o[dn][2 * r + 1] * inv);
      }
      if (lane % 4 == 0) lse[static_cast<int64_t>(bh) * T + query] = (m[r] + log2f(sum)) * kLn2;
    }
  }
}

}  // namespace colossus::kernels::cuda::attn
