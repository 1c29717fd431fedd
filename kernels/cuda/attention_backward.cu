// Launcher of the flash backward kernels (attention_backward_kernels.cuh).
#include <algorithm>

#include "colossus/check.h"
#include "cuda/attention_backward_kernels.cuh"
#include "cuda/check.h"

namespace colossus::kernels::cuda::attn {

template <int D>
void LaunchFlashBackward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                         const float* lse, float* dq_accum, float* delta, int B, int T, int NH,
                         cudaStream_t s) {
  using Cfg = BwdTile<D>;
  const int64_t C = static_cast<int64_t>(NH) * D;
  const int64_t rows = static_cast<int64_t>(B) * T;  // tokens
  const float scale = SoftmaxScale(D);

  COLOSSUS_ATTN_ZERO_ASYNC(dq_accum, static_cast<size_t>(rows * C) * sizeof(float), s);
  {
    constexpr int kThreads = 256;  // 8 rows per block
    const int64_t n = rows * NH;
    const int64_t blocks = (n + kThreads / 32 - 1) / (kThreads / 32);
    COLOSSUS_ATTN_LAUNCH(DeltaKernel, static_cast<unsigned>(blocks), kThreads, 0, s, delta, dout,
                         out, n, T, NH, D);
    COLOSSUS_CUDA_CHECK_LAUNCH();
  }

  const auto kernel = FlashBackwardKernel<D>;
  COLOSSUS_ATTN_ALLOW_SMEM(kernel, Cfg::kSmemBytes);
  const int n_kv = (T + Cfg::kBc - 1) / Cfg::kBc;
  CHECK(static_cast<int64_t>(B) * NH <= 0x7fffffff && n_kv <= 65535)
      << "AttentionBackward: grid too large: B*NH = " << static_cast<int64_t>(B) * NH
      << ", key tiles = " << n_kv;
  const dim3 grid(B * NH, n_kv);
  COLOSSUS_ATTN_LAUNCH(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes, s, dqkv, dq_accum, dout, qkv,
                       lse, delta, T, NH, scale * kLog2e, scale);
  COLOSSUS_CUDA_CHECK_LAUNCH();

  {
    constexpr int kThreads = 256;
    const int64_t pairs = rows * C / 2;
    const int64_t blocks = std::min<int64_t>((pairs + kThreads - 1) / kThreads, 65535LL * 16);
    COLOSSUS_ATTN_LAUNCH(DqConvertKernel, static_cast<unsigned>(blocks), kThreads, 0, s, dqkv,
                         dq_accum, rows, static_cast<int>(C), scale);
    COLOSSUS_CUDA_CHECK_LAUNCH();
  }
}

template void LaunchFlashBackward<64>(bf16*, const bf16*, const bf16*, const bf16*, const float*,
                                      float*, float*, int, int, int, cudaStream_t);
template void LaunchFlashBackward<128>(bf16*, const bf16*, const bf16*, const bf16*, const float*,
                                       float*, float*, int, int, int, cudaStream_t);

}  // namespace colossus::kernels::cuda::attn
