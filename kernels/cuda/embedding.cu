// Token + position embedding, forward and backward.
//
// Forward, one warp per output row (token): the row's C channels are read from two table
// rows and written once, so the work is pure bandwidth; a warp per row keeps every
// access of a warp inside one contiguous row (coalesced, 16-byte vectors when C allows),
// and 8 warps per block (256 threads) give the scheduler enough independent loads.
// Grid: ceil(B*T / 8) blocks.
//
// Backward:
//  * dwpe[t, c] += sum over b of dout[b, t, c]: one thread per (t, c), summing the B
//    rows in order. Consecutive threads take consecutive c (coalesced), and no two
//    threads write one element, so no atomics and the result is deterministic.
//  * dwte[token, c] += dout[b, t, c]: tokens repeat, so rows of dout collide on rows of
//    dwte; one warp per dout row adds it with f32 atomics (a fire-and-forget RED in
//    SASS). The order of the additions into one element varies from run to run, so
//    dwte is reproducible to rounding, not bit for bit. (A deterministic version
//    would sort the tokens first; the table's gradient is small next to the GEMMs.)
//
// A token outside [0, Vp) would read outside the table. The device cannot report it
// cheaply, so the forward writes NaN into that row (training then fails loudly at the
// loss) and the backward skips it.
#include <cmath>

#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

template <typename T, int kVec>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    EmbeddingForwardKernel(T* __restrict__ out, const int32_t* __restrict__ tokens,
                           const T* __restrict__ wte, const T* __restrict__ wpe, int64_t Vp,
                           int64_t rows, int T_len, int C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const int32_t token = tokens[row];
  T* o = out + row * C;
  if (token < 0 || token >= Vp) {
    float nan[kVec];
#pragma unroll
    for (int i = 0; i < kVec; ++i) nan[i] = NAN;
    for (int c = lane * kVec; c < C; c += 32 * kVec) StoreVec<kVec>(o + c, nan);
    return;
  }
  const T* w = wte + static_cast<int64_t>(token) * C;
  const T* p = wpe + (row % T_len) * C;
  for (int c = lane * kVec; c < C; c += 32 * kVec) {
    float x[kVec], y[kVec];
    LoadVec<kVec>(w + c, x);
    LoadVec<kVec>(p + c, y);
#pragma unroll
    for (int i = 0; i < kVec; ++i) x[i] += y[i];
    StoreVec<kVec>(o + c, x);
  }
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    EmbeddingTokenBackwardKernel(float* __restrict__ dwte, const T* __restrict__ dout,
                                 const int32_t* __restrict__ tokens, int64_t Vp, int64_t rows,
                                 int C) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const int32_t token = tokens[row];
  if (token < 0 || token >= Vp) return;
  const T* d = dout + row * C;
  float* w = dwte + static_cast<int64_t>(token) * C;
  for (int c = lane * kVec; c < C; c += 32 * kVec) {
    float x[kVec];
    LoadVec<kVec>(d + c, x);
#pragma unroll
    for (int i = 0; i < kVec; ++i) atomicAdd(w + c + i, x[i]);
  }
}

// One thread per element of dwpe[0:T, :] (grid-stride).
template <typename T>
__global__ void EmbeddingPositionBackwardKernel(float* __restrict__ dwpe,
                                                const T* __restrict__ dout, int B,
                                                int64_t TC) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < TC;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int b = 0; b < B; ++b) sum += ToFloat(dout[b * TC + i]);
    dwpe[i] += sum;
  }
}

}  // namespace

void EmbeddingForward(const LaunchContext& ctx, DType act, void* out, const int32_t* tokens,
                      const void* wte, const void* wpe, int64_t Vp, int B, int T, int C) {
  const int64_t rows = static_cast<int64_t>(B) * T;
  if (rows == 0 || C == 0) return;
  const unsigned blocks = BlocksFor(rows, kWarpsPerBlock, INT32_MAX);
  DispatchFloat(act, "EmbeddingForward", [&](auto tag) {
    using E = decltype(tag);
    constexpr int kVec = 16 / sizeof(E);
    const bool vec = C % kVec == 0 && Aligned16(out) && Aligned16(wte) && Aligned16(wpe);
    auto kernel = vec ? EmbeddingForwardKernel<E, kVec> : EmbeddingForwardKernel<E, 1>;
    COLOSSUS_LAUNCH(kernel, blocks, kWarpsPerBlock * 32, ctx.stream,
        static_cast<E*>(out), tokens, static_cast<const E*>(wte), static_cast<const E*>(wpe),
        Vp, rows, T, C);
    COLOSSUS_CUDA_CHECK_LAUNCH();
  });
}

void EmbeddingBackward(const LaunchContext& ctx, DType act, float* dwte, float* dwpe,
                       const void* dout, const int32_t* tokens, int64_t Vp, int B, int T,
                       int C) {
  const int64_t rows = static_cast<int64_t>(B) * T;
  if (rows == 0 || C == 0) return;
  DispatchFloat(act, "EmbeddingBackward", [&](auto tag) {
    using E = decltype(tag);
    constexpr int kVec = 16 / sizeof(E);
    const E* d = static_cast<const E*>(dout);
    const bool vec = C % kVec == 0 && Aligned16(dout);
    auto token_kernel =
        vec ? EmbeddingTokenBackwardKernel<E, kVec> : EmbeddingTokenBackwardKernel<E, 1>;
    COLOSSUS_LAUNCH(token_kernel, BlocksFor(rows, kWarpsPerBlock, INT32_MAX),
                    kWarpsPerBlock * 32, ctx.stream, dwte, d, tokens, Vp, rows, C);
    COLOSSUS_CUDA_CHECK_LAUNCH();
    const int64_t TC = static_cast<int64_t>(T) * C;
    auto position_kernel = EmbeddingPositionBackwardKernel<E>;
    COLOSSUS_LAUNCH(position_kernel, BlocksFor(TC, 256, int64_t{ctx.num_sms} * 8), 256,
                    ctx.stream, dwpe, d, B, TC);
    COLOSSUS_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace colossus::kernels::cuda
