// Launcher of the flash forward kernel (attention_forward_kernel.cuh).
#include "colossus/check.h"
#include "cuda/attention_forward_kernel.cuh"
#include "cuda/check.h"

namespace colossus::kernels::cuda::attn {

template <int D>
void LaunchFlashForward(bf16* out, float* lse, const bf16* qkv, int B, int T, int NH,
                        cudaStream_t s) {
  using Cfg = FwdTile<D>;
  const auto kernel = FlashForwardKernel<D>;
  // Above 48 KB a block's dynamic shared memory must be opted into, per kernel.
  COLOSSUS_ATTN_ALLOW_SMEM(kernel, Cfg::kSmemBytes);
  const int n_q = (T + Cfg::kBr - 1) / Cfg::kBr;
  CHECK(static_cast<int64_t>(B) * NH <= 0x7fffffff && n_q <= 65535)
      << "AttentionForward: grid too large: B*NH = " << static_cast<int64_t>(B) * NH
      << ", query tiles = " << n_q;
  const dim3 grid(B * NH, n_q);
  const float scale_log2 = SoftmaxScale(D) * kLog2e;
  COLOSSUS_ATTN_LAUNCH(kernel, grid, Cfg::kThreads, Cfg::kSmemBytes, s, out, lse, qkv, T, NH,
                       scale_log2);
  COLOSSUS_CUDA_CHECK_LAUNCH();
}

template void LaunchFlashForward<64>(bf16*, float*, const bf16*, int, int, int, cudaStream_t);
template void LaunchFlashForward<128>(bf16*, float*, const bf16*, int, int, int, cudaStream_t);

}  // namespace colossus::kernels::cuda::attn
