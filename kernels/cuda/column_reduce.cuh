// Deterministic column sums over rows, the shape of every parameter gradient that sums
// over the batch (LayerNorm's dweight/dbias, a Linear's dbias):
//
//   out_k[c] += sum over rows r < N of f_k(r, c)     for k < kOut, c < C
//
// in two kernels, with no atomics, so the result is the same bit for bit on every run:
//
//  1. ColumnPartialSumsKernel, grid (slabs, chunks). A block owns one slab of 32 * kVec
//     columns (each lane kVec adjacent columns, so a warp reads 32 * kVec contiguous
//     elements of a row: coalesced) and one chunk of consecutive rows; its 8 warps take
//     the chunk's rows round-robin and accumulate in registers, then add their 8
//     accumulators in warp order through shared memory and write one partial row per
//     chunk: partial[chunk][k][c].
//  2. AddPartialsKernel, one thread per column: adds the chunks' partials in chunk
//     order and adds the total into the f32 gradient.
//
// The chunk count aims at 4 blocks per SM in step 1, so it depends on the GPU's SM
// count: results are bitwise reproducible on one kind of GPU.
//
// f_k comes from a functor: contrib(row, c, v) fills v[k][i] = f_k(row, c + i), i < kVec.
// The launcher guarantees C % kVec == 0 and 16-byte alignment when kVec > 1.
#pragma once

#include <algorithm>
#include <cstdint>

#include "colossus/check.h"
#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {

constexpr int kColumnWarps = 8;

struct ColumnPlan {
  int slabs = 0;
  int chunks = 0;
  int64_t rows_per_chunk = 0;
};

inline ColumnPlan PlanColumnSums(int64_t N, int C, int vec, int num_sms) {
  ColumnPlan plan;
  const int64_t slab_width = 32 * static_cast<int64_t>(vec);
  plan.slabs = static_cast<int>((C + slab_width - 1) / slab_width);
  const int64_t want_blocks = 4 * static_cast<int64_t>(std::max(num_sms, 1));
  int64_t chunks = std::max<int64_t>(1, (want_blocks + plan.slabs - 1) / plan.slabs);
  // At least one row per warp per chunk, and gridDim.y's limit.
  chunks = std::min(chunks, std::max<int64_t>(1, (N + kColumnWarps - 1) / kColumnWarps));
  chunks = std::min<int64_t>(chunks, 65535);
  plan.rows_per_chunk = (N + chunks - 1) / chunks;
  // Recount so that no chunk is empty (every chunk's partial is written either way).
  plan.chunks = static_cast<int>((N + plan.rows_per_chunk - 1) / plan.rows_per_chunk);
  return plan;
}

template <int kVec, int kOut, typename Contribution>
__global__ void __launch_bounds__(kColumnWarps * 32)
    ColumnPartialSumsKernel(float* __restrict__ partial, Contribution contrib, int64_t N,
                            int C, int64_t rows_per_chunk) {
  __shared__ float staged[kColumnWarps][kOut][32 * kVec];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int slab_begin = blockIdx.x * 32 * kVec;
  const int c = slab_begin + lane * kVec;
  const int64_t row_begin = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t row_end = min(N, row_begin + rows_per_chunk);

  float acc[kOut][kVec];
#pragma unroll
  for (int k = 0; k < kOut; ++k) {
#pragma unroll
    for (int i = 0; i < kVec; ++i) acc[k][i] = 0.0f;
  }
  // c < C covers the whole vector: C % kVec == 0 whenever kVec > 1.
  if (c < C) {
    for (int64_t row = row_begin + warp; row < row_end; row += kColumnWarps) {
      float v[kOut][kVec];
      contrib(row, c, v);
#pragma unroll
      for (int k = 0; k < kOut; ++k) {
#pragma unroll
        for (int i = 0; i < kVec; ++i) acc[k][i] += v[k][i];
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kOut; ++k) {
#pragma unroll
    for (int i = 0; i < kVec; ++i) staged[warp][k][lane * kVec + i] = acc[k][i];
  }
  __syncthreads();
  for (int j = threadIdx.x; j < kOut * 32 * kVec; j += blockDim.x) {
    const int k = j / (32 * kVec);
    const int col = j % (32 * kVec);
    if (slab_begin + col < C) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kColumnWarps; ++w) sum += staged[w][k][col];
      partial[(static_cast<int64_t>(blockIdx.y) * kOut + k) * C + slab_begin + col] = sum;
    }
  }
}

// out[c] += sum over p < parts of partial[p * stride + c], for c < C. (static: each
// .cu file that includes this header gets its own copy, and their host stubs must not
// collide at link time.)
static __global__ void AddPartialsKernel(float* __restrict__ out, const float* __restrict__ partial,
                                  int parts, int64_t stride, int C) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
    float sum = 0.0f;
    for (int p = 0; p < parts; ++p) sum += partial[p * stride + c];
    out[c] += sum;
  }
}

// Runs both steps: outs[k][c] += sum_rows f_k(row, c). N > 0, C > 0.
template <int kVec, int kOut, typename Contribution>
void LaunchColumnSums(const LaunchContext& ctx, float* const (&outs)[kOut],
                      const Contribution& contrib, int64_t N, int C) {
  const ColumnPlan plan = PlanColumnSums(N, C, kVec, ctx.num_sms);
  const size_t partial_floats = static_cast<size_t>(plan.chunks) * kOut * C;
  float* partial =
      static_cast<float*>(ctx.scratch->Get(partial_floats * sizeof(float), ctx.stream));
  auto partial_kernel = ColumnPartialSumsKernel<kVec, kOut, Contribution>;
  COLOSSUS_LAUNCH(partial_kernel, dim3(plan.slabs, plan.chunks), kColumnWarps * 32, ctx.stream,
                  partial, contrib, N, C, plan.rows_per_chunk);
  COLOSSUS_CUDA_CHECK_LAUNCH();
  for (int k = 0; k < kOut; ++k) {
    COLOSSUS_LAUNCH(AddPartialsKernel, BlocksFor(C, 256, 1024), 256, ctx.stream, outs[k],
                    partial + static_cast<int64_t>(k) * C, plan.chunks,
                    static_cast<int64_t>(kOut) * C, C);
    COLOSSUS_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace colossus::kernels::cuda
