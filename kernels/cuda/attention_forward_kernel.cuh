// FlashAttention-2 forward, causal, bf16 in / fp32 accumulate, tensor cores through
// mma.sync.m16n8k16 (see attention_internal.cuh for the fragment layouts).
//
// One block computes kBr queries of one (batch, head); each of its 4 warps owns
// 16 * kMTiles query rows for the whole kernel (kMTiles = 2 at D = 64, 1 at D = 128; so
// kBr = 128 and 64), so a row's softmax statistics (max m, sum l) and its output
// accumulator live in that warp's registers and need only quad shuffles. The block walks
// key/value tiles of kBc = 64 keys from 0 up to the diagonal:
//   S = Q K^T (fp32), mask the diagonal tiles, m_new = max(m, rowmax S),
//   P = exp2(S*scale*log2e - m_new), l = l*alpha + rowsum P, O = O*alpha + P V
// with alpha = exp2(m - m_new); P goes from the S accumulators straight into A fragments
// (the m16n8 C layout of two adjacent n-tiles is the m16k16 A layout), so it never
// touches shared memory. At the end O /= l and lse = (m + log2 l) * ln 2. A warp whose
// rows all precede a tile's first key skips that tile's math.
//
// Shared memory holds Q, one K tile and one V tile (rows padded by 16 bytes so the 8 row
// addresses of each ldmatrix phase fall in 8 different bank quads). Copies overlap
// compute as in FA2: V_j is loaded while S = Q K_j^T runs, K_{j+1} while softmax and
// P V_j run. (kBr + 128) rows x (D + 8) x 2 B = 36 KB for D = 64, 51 KB for D = 128.
//
// Registers per thread: Q fragments, O and S take 32 + 64 + 64 at D = 64 and
// 64 + 64 + 32 at D = 128, plus m, l, addresses and the K/V fragments in flight.
// ptxas (CUDA 13.0, sm_90a): 255 registers for D = 64 (8 bytes spilled once, outside the
// key loop), 234 for D = 128; 2 blocks (8 warps) per SM either way.
#pragma once

#include "cuda/attention_internal.cuh"

namespace colossus::kernels::cuda::attn {

template <int D>
struct FwdTile {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  // 16-row MMA tiles per warp. Two share every K/V fragment a warp loads from shared
  // memory between two MMAs, halving shared-memory traffic per MMA; at D = 64 their
  // registers fit (Q 32, O 64, S 64), at D = 128 they would not (Q 64, O 128, S 64).
  static constexpr int kMTiles = D == 64 ? 2 : 1;
  static constexpr int kRowsPerWarp = 16 * kMTiles;
  static constexpr int kBr = kRowsPerWarp * kWarps;  // queries per block
  static constexpr int kBc = 64;                     // keys per tile
  static constexpr int kStride = D + 8;              // shared row stride in elements (+16 bytes)
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
  constexpr int kThreads = Cfg::kThreads, kM = Cfg::kMTiles;
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

  // This warp's rows are warp_row0 + mi*16 + 0..15 of the block's tile. Row r = 0 of a
  // lane in tile mi is warp_row0 + mi*16 + lane/4, r = 1 is 8 rows further.
  const int warp_row0 = warp * Cfg::kRowsPerWarp;
  // Its Q rows as A fragments, one per 16-wide slice of the head dim. Lane l addresses
  // row l % 16, column half l / 16: matrices 0..3 = the four 8x8 quarters in A order.
  uint32_t qf[kM][D / 16][4];
#pragma unroll
  for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      LdMatrixX4(qf[mi][kk], SmemAddr(sQ + (warp_row0 + mi * 16 + lane % 16) * kStride + kk * 16 +
                                      (lane / 16) * 8));
    }
  }

  float o[kM][D / 8][4];
#pragma unroll
  for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn)
      o[mi][dn][0] = o[mi][dn][1] = o[mi][dn][2] = o[mi][dn][3] = 0.f;
  }
  // m is in the log2 domain of the scaled scores; l is this lane's partial row sum (its 2
  // of every 8 columns); the quad's partials are added once, at the end, since all four
  // lanes apply the same rescaling alpha.
  float m[kM][2], l[kM][2];
#pragma unroll
  for (int mi = 0; mi < kM; ++mi) {
    m[mi][0] = m[mi][1] = -INFINITY;
    l[mi][0] = l[mi][1] = 0.f;
  }

  const int kv_end = min(T, q0 + kBr);
  const int n_kv = (kv_end + kBc - 1) / kBc;
  for (int j = 0; j < n_kv; ++j) {
    const int kv0 = j * kBc;
    // Safe: the barrier that ended the previous iteration follows every warp's P V reads.
    LoadTileAsync<kBc, D, kStride, kThreads>(sV, gV, kv0, T, ld, tid);
    CpAsyncCommit();
    // A tile entirely after this warp's last query changes nothing (every p is 0, alpha 1):
    // skip its math. Warp-uniform; the barriers below are still reached by all.
    const bool active = kv0 <= q0 + warp_row0 + Cfg::kRowsPerWarp - 1;

    // S = Q K^T: B[k = dim][n = key] = K[key][dim], i.e. K's rows as stored, no transpose.
    // Lane l addresses key nn*16 + l%8 + (l/16)*8 and dim kk*16 + ((l/8)%2)*8, so
    // registers 0,1 are the B fragment of keys nn*16..+7 and 2,3 of keys nn*16+8..+15.
    float s[kM][kBc / 8][4];
#pragma unroll
    for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n) s[mi][n][0] = s[mi][n][1] = s[mi][n][2] = s[mi][n][3] = 0.f;
    }
    if (active) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int nn = 0; nn < kBc / 16; ++nn) {
          uint32_t kb[4];
          LdMatrixX4(kb, SmemAddr(sK + (nn * 16 + lane % 8 + (lane / 16) * 8) * kStride + kk * 16 +
                                  ((lane / 8) % 2) * 8));
#pragma unroll
          for (int mi = 0; mi < kM; ++mi) {
            Mma(s[mi][2 * nn], qf[mi][kk], kb[0], kb[1]);
            Mma(s[mi][2 * nn + 1], qf[mi][kk], kb[2], kb[3]);
          }
        }
      }

      // Causal mask where the tile reaches past the block's first query. Keys >= T need
      // no mask of their own: for every stored query t < T they are > t.
      if (kv0 + kBc - 1 > q0) {
#pragma unroll
        for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
          for (int n = 0; n < kBc / 8; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int key = kv0 + n * 8 + 2 * (lane % 4) + (e & 1);
              const int query = q0 + warp_row0 + mi * 16 + lane / 4 + (e / 2) * 8;
              if (key > query) s[mi][n][e] = -INFINITY;
            }
          }
        }
      }
    }

    CpAsyncWait<0>();  // V_j has landed (for this thread's copies) ...
    __syncthreads();   // ... for everyone's, and every warp is done reading K_j.
    if (j + 1 < n_kv) {
      LoadTileAsync<kBc, D, kStride, kThreads>(sK, gK, kv0 + kBc, T, ld, tid);
      CpAsyncCommit();
    }

    if (active) {
      // Online softmax. Tile 0 always holds key 0 <= every query, so after it m is
      // finite and a fully masked row of a later tile gives alpha = 1, p = 0; the -inf
      // guard only keeps exp2(-inf - -inf) = NaN out of a row whose keys so far are all
      // masked, which this tiling never produces but costs one select.
#pragma unroll
      for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          float mx = -INFINITY;
#pragma unroll
          for (int n = 0; n < kBc / 8; ++n) {
            mx = fmaxf(mx, fmaxf(s[mi][n][2 * r], s[mi][n][2 * r + 1]));
          }
          mx = QuadMax(mx);
          const float m_new = fmaxf(m[mi][r], mx * scale_log2);
          const float m_ref = m_new == -INFINITY ? 0.f : m_new;
          const float alpha = exp2f(m[mi][r] - m_ref);
          m[mi][r] = m_new;
          float sum = 0.f;
#pragma unroll
          for (int n = 0; n < kBc / 8; ++n) {
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; ++e) {
              const float p = exp2f(fmaf(s[mi][n][e], scale_log2, -m_ref));
              s[mi][n][e] = p;
              sum += p;
            }
          }
          l[mi][r] = l[mi][r] * alpha + sum;
#pragma unroll
          for (int dn = 0; dn < D / 8; ++dn) {
            o[mi][dn][2 * r] *= alpha;
            o[mi][dn][2 * r + 1] *= alpha;
          }
        }
      }

      // O += P V. A = P from registers: n-tiles 2kk and 2kk+1 of S form the kk-th
      // 16-wide k-slice. B[k = key][n = dim] = V[key][dim] needs two consecutive keys
      // per register, i.e. V transposed: ldmatrix.trans, lane l addressing key
      // kk*16 + l%8 + ((l/8)%2)*8 and dim dn*16 + (l/16)*8 (registers 0,1: dims
      // dn*16..+7; 2,3: dims +8..+15).
#pragma unroll
      for (int kk = 0; kk < kBc / 16; ++kk) {
        uint32_t pa[kM][4];
#pragma unroll
        for (int mi = 0; mi < kM; ++mi) {
          pa[mi][0] = PackBf16(s[mi][2 * kk][0], s[mi][2 * kk][1]);
          pa[mi][1] = PackBf16(s[mi][2 * kk][2], s[mi][2 * kk][3]);
          pa[mi][2] = PackBf16(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
          pa[mi][3] = PackBf16(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dn = 0; dn < D / 16; ++dn) {
          uint32_t vb[4];
          LdMatrixX4Trans(vb, SmemAddr(sV + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride +
                                       dn * 16 + (lane / 16) * 8));
#pragma unroll
          for (int mi = 0; mi < kM; ++mi) {
            Mma(o[mi][2 * dn], pa[mi], vb[0], vb[1]);
            Mma(o[mi][2 * dn + 1], pa[mi], vb[2], vb[3]);
          }
        }
      }
    }

    CpAsyncWait<0>();  // K_{j+1} has landed ...
    __syncthreads();   // ... for everyone's copies, and every warp is done reading V_j.
  }

  // Epilogue: normalise and store this lane's columns of its rows. Direct 4-byte stores
  // (a quad writes 16 contiguous bytes); the output is T*D per head against T^2*D work,
  // so staging it through shared memory would not pay.
#pragma unroll
  for (int mi = 0; mi < kM; ++mi) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = QuadSum(l[mi][r]);
      const int query = q0 + warp_row0 + mi * 16 + lane / 4 + 8 * r;
      if (query < T) {
        const float inv = 1.f / sum;  // sum >= 1: the row's maximum contributes exp2(0)
        bf16* orow = out + (static_cast<int64_t>(b) * T + query) * C + static_cast<int64_t>(h) * D +
                     2 * (lane % 4);
#pragma unroll
        for (int dn = 0; dn < D / 8; ++dn) {
          *reinterpret_cast<uint32_t*>(orow + dn * 8) =
              PackBf16(o[mi][dn][2 * r] * inv, o[mi][dn][2 * r + 1] * inv);
        }
        if (lane % 4 == 0) {
          lse[static_cast<int64_t>(bh) * T + query] = (m[mi][r] + log2f(sum)) * kLn2;
        }
      }
    }
  }
}

}  // namespace colossus::kernels::cuda::attn
