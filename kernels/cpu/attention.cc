// Causal multi-head self-attention, forward and backward, with the T x T probabilities
// never stored: forward keeps only each query's log-sum-exp, backward rebuilds the
// probabilities from it one block of queries at a time.
//
// Work is split into blocks of kQueryBlock queries of one (batch, head). A block of
// queries [q0, q1) attends to keys [0, q1), so its scores are one
// [q1-q0, q1] GEMM tile in per-thread scratch; tiles right of the diagonal are never
// computed, which roughly halves the GEMM work against a full T x T product.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "colossus/check.h"
#include "cpu/blas.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/vec_math.h"

namespace colossus::kernels::cpu {
namespace {

// 64 queries x 64-wide heads is a GEMM large enough for BLAS to reach most of its
// peak, and small enough that a [64, T] tile stays in L2 for T in the thousands.
constexpr int kQueryBlock = 64;

// Strides and offsets of the [B,T,3,NH,hs] and [B,T,C] layouts for one (b, h).
struct HeadLayout {
  int64_t qkv_row;  // 3C: from token t to t+1 in qkv
  int64_t out_row;  // C: from token t to t+1 in out
  int64_t qkv_base;  // offset of q(b, 0, h) in qkv; k and v follow at +C and +2C
  int64_t out_base;  // offset of out(b, 0, h)
  int64_t lse_base;  // offset of lse(b, h, 0)
};

HeadLayout Layout(int b, int h, int T, int C, int NH) {
  const int hs = C / NH;
  HeadLayout l;
  l.qkv_row = 3 * static_cast<int64_t>(C);
  l.out_row = C;
  l.qkv_base = static_cast<int64_t>(b) * T * l.qkv_row + static_cast<int64_t>(h) * hs;
  l.out_base = static_cast<int64_t>(b) * T * C + static_cast<int64_t>(h) * hs;
  l.lse_base = (static_cast<int64_t>(b) * NH + h) * T;
  return l;
}

void CheckShape(const char* op, int B, int T, int C, int NH) {
  CHECK(B >= 0 && T >= 0 && C >= 0 && NH > 0 && C % NH == 0)
      << op << ": bad shape B=" << B << " T=" << T << " C=" << C << " NH=" << NH
      << " (C must be a multiple of NH)";
}

}  // namespace

template <typename F>
void AttentionForward(F* out, F* lse, const F* qkv, int B, int T, int C, int NH) {
  CheckShape("AttentionForward", B, T, C, NH);
  const int hs = C / NH;
  const F scale = F(1) / std::sqrt(static_cast<F>(hs));
  const int nqb = (T + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = static_cast<int64_t>(B) * NH * nqb;
  // Later query blocks see more keys, so tasks differ in cost: hand them out one by one.
#pragma omp parallel for schedule(dynamic, 1) if (static_cast<int64_t>(B) * T * C >= kMinParallelWork)
  for (int64_t task = 0; task < tasks; ++task) {
    const int qb = static_cast<int>(task % nqb);
    const int h = static_cast<int>(task / nqb % NH);
    const int b = static_cast<int>(task / nqb / NH);
    const HeadLayout l = Layout(b, h, T, C, NH);
    const int q0 = qb * kQueryBlock;
    const int q1 = std::min(T, q0 + kQueryBlock);
    const int M = q1 - q0, kv = q1;
    const F* q = qkv + l.qkv_base + q0 * l.qkv_row;
    const F* k = qkv + l.qkv_base + C;
    const F* v = qkv + l.qkv_base + 2 * C;

    // S = scale * Q[q0:q1] @ K[0:q1]^T, [M, kv].
    F* s = ThreadScratch<F, 0>(static_cast<int64_t>(kQueryBlock) * T);
    Gemm<F>(false, true, M, kv, hs, scale, q, l.qkv_row, k, l.qkv_row, F(0), s, kv);

    // Row-wise causal softmax in place: query t sees keys 0..t; the rest of its row
    // (keys t+1..q1-1, inside this tile) gets probability 0.
    for (int i = 0; i < M; ++i) {
      const int t = q0 + i;
      F* row = s + static_cast<int64_t>(i) * kv;
      F mx = -std::numeric_limits<F>::infinity();
#pragma omp simd reduction(max : mx)
      for (int j = 0; j <= t; ++j) mx = std::max(mx, row[j]);
      F sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int j = 0; j <= t; ++j) {
        row[j] = Exp(row[j] - mx);
        sum += row[j];
      }
      const F inv = F(1) / sum;
#pragma omp simd
      for (int j = 0; j <= t; ++j) row[j] *= inv;
      for (int j = t + 1; j < kv; ++j) row[j] = 0;
      lse[l.lse_base + t] = mx + std::log(sum);
    }

    // out[q0:q1] = P @ V[0:q1], [M, hs], straight into the [B,T,C] output.
    Gemm<F>(false, false, M, hs, kv, F(1), s, kv, v, l.qkv_row, F(0),
            out + l.out_base + q0 * l.out_row, l.out_row);
  }
}

template <typename F>
void AttentionBackward(F* dqkv, const F* dout, const F* qkv, const F* out, const F* lse,
                       int B, int T, int C, int NH) {
  CheckShape("AttentionBackward", B, T, C, NH);
  const int hs = C / NH;
  const F scale = F(1) / std::sqrt(static_cast<F>(hs));
  const int64_t tasks = static_cast<int64_t>(B) * NH;
  // One task per (b, h): every query block of a head adds into the same dK and dV rows,
  // so the blocks of one head run in order on one thread.
#pragma omp parallel for schedule(dynamic, 1) if (static_cast<int64_t>(B) * T * C >= kMinParallelWork)
  for (int64_t task = 0; task < tasks; ++task) {
    const int h = static_cast<int>(task % NH);
    const int b = static_cast<int>(task / NH);
    const HeadLayout l = Layout(b, h, T, C, NH);
    const F* q = qkv + l.qkv_base;
    const F* k = q + C;
    const F* v = q + 2 * C;
    F* dq = dqkv + l.qkv_base;
    F* dk = dq + C;
    F* dv = dq + 2 * C;
    const F* o = out + l.out_base;
    const F* dO = dout + l.out_base;
    for (int t = 0; t < T; ++t) {
      std::memset(dk + t * l.qkv_row, 0, hs * sizeof(F));
      std::memset(dv + t * l.qkv_row, 0, hs * sizeof(F));
    }
    F* p = ThreadScratch<F, 0>(static_cast<int64_t>(kQueryBlock) * T);
    F* dp = ThreadScratch<F, 1>(static_cast<int64_t>(kQueryBlock) * T);

    for (int q0 = 0; q0 < T; q0 += kQueryBlock) {
      const int q1 = std::min(T, q0 + kQueryBlock);
      const int M = q1 - q0, kv = q1;
      const F* qb = q + q0 * l.qkv_row;
      const F* dOb = dO + q0 * l.out_row;

      // P = exp(scale * Q K^T - lse), rebuilt from the forward's log-sum-exp.
      Gemm<F>(false, true, M, kv, hs, scale, qb, l.qkv_row, k, l.qkv_row, F(0), p, kv);
      for (int i = 0; i < M; ++i) {
        const int t = q0 + i;
        F* row = p + static_cast<int64_t>(i) * kv;
        const F m = lse[l.lse_base + t];
#pragma omp simd
        for (int j = 0; j <= t; ++j) row[j] = Exp(row[j] - m);
        for (int j = t + 1; j < kv; ++j) row[j] = 0;
      }

      // dV[0:q1] += P^T @ dO[q0:q1]
      Gemm<F>(true, false, kv, hs, M, F(1), p, kv, dOb, l.out_row, F(1), dv, l.qkv_row);
      // dP = dO[q0:q1] @ V[0:q1]^T
      Gemm<F>(false, true, M, kv, hs, F(1), dOb, l.out_row, v, l.qkv_row, F(0), dp, kv);

      // Softmax backward: dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'), and the inner sum
      // equals dO_i . O_i (O = P V), a dot product of length hs instead of kv. The score
      // scale is folded in here so the two GEMMs below need no alpha.
      for (int i = 0; i < M; ++i) {
        const int t = q0 + i;
        const F* oi = o + static_cast<int64_t>(t) * l.out_row;
        const F* doi = dOb + static_cast<int64_t>(i) * l.out_row;
        F dsum = 0;
#pragma omp simd reduction(+ : dsum)
        for (int c = 0; c < hs; ++c) dsum += oi[c] * doi[c];
        const F* prow = p + static_cast<int64_t>(i) * kv;
        F* drow = dp + static_cast<int64_t>(i) * kv;
#pragma omp simd
        for (int j = 0; j < kv; ++j) drow[j] = prow[j] * (drow[j] - dsum) * scale;
      }

      // dQ[q0:q1] = dS @ K[0:q1] (each query row lives in exactly one block: overwrite)
      Gemm<F>(false, false, M, hs, kv, F(1), dp, kv, k, l.qkv_row, F(0),
              dq + q0 * l.qkv_row, l.qkv_row);
      // dK[0:q1] += dS^T @ Q[q0:q1]
      Gemm<F>(true, false, kv, hs, M, F(1), dp, kv, qb, l.qkv_row, F(1), dk, l.qkv_row);
    }
  }
}

#define COLOSSUS_INSTANTIATE(F)                                                       \
  template void AttentionForward<F>(F*, F*, const F*, int, int, int, int);            \
  template void AttentionBackward<F>(F*, const F*, const F*, const F*, const F*, int, \
                                     int, int, int);
COLOSSUS_INSTANTIATE(float)
COLOSSUS_INSTANTIATE(double)
#undef COLOSSUS_INSTANTIATE

}  // namespace colossus::kernels::cpu
