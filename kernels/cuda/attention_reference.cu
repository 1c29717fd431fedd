// Launchers of the reference attention kernels (attention_reference_kernels.cuh).
#include <cmath>

#include "colossus/check.h"
#include "cuda/attention_reference_kernels.cuh"
#include "cuda/check.h"

namespace colossus::kernels::cuda::attn {
namespace {

int64_t Blocks(int B, int T, int NH) {
  const int64_t rows = static_cast<int64_t>(B) * NH * T;
  const int64_t blocks = (rows + kRefWarpsPerBlock - 1) / kRefWarpsPerBlock;
  CHECK(blocks <= 0x7fffffff) << "attention reference: " << rows << " rows is too many";
  return blocks;
}

}  // namespace

template <typename E>
void LaunchReferenceForward(E* out, float* lse, const E* qkv, int B, int T, int NH, int hs,
                            cudaStream_t s) {
  COLOSSUS_ATTN_LAUNCH(ReferenceForwardKernel<E>, static_cast<unsigned>(Blocks(B, T, NH)),
                       32 * kRefWarpsPerBlock, 0, s, out, lse, qkv, B, T, NH, hs, SoftmaxScale(hs));
  COLOSSUS_CUDA_CHECK_LAUNCH();
}

template <typename E>
void LaunchReferenceBackward(E* dqkv, const E* dout, const E* qkv, const E* out, const float* lse,
                             float* delta, int B, int T, int NH, int hs, cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>(Blocks(B, T, NH));
  COLOSSUS_ATTN_LAUNCH(ReferenceBackwardQueryKernel<E>, blocks, 32 * kRefWarpsPerBlock, 0, s, dqkv,
                       delta, dout, qkv, out, lse, B, T, NH, hs, SoftmaxScale(hs));
  COLOSSUS_CUDA_CHECK_LAUNCH();
  COLOSSUS_ATTN_LAUNCH(ReferenceBackwardKeyKernel<E>, blocks, 32 * kRefWarpsPerBlock, 0, s, dqkv,
                       delta, dout, qkv, lse, B, T, NH, hs, SoftmaxScale(hs));
  COLOSSUS_CUDA_CHECK_LAUNCH();
}

#define COLOSSUS_INSTANTIATE(E)                                                                    \
  template void LaunchReferenceForward<E>(E*, float*, const E*, int, int, int, int, cudaStream_t); \
  template void LaunchReferenceBackward<E>(E*, const E*, const E*, const E*, const float*, float*, \
                                           int, int, int, int, cudaStream_t);
COLOSSUS_INSTANTIATE(float)
COLOSSUS_INSTANTIATE(bf16)
#undef COLOSSUS_INSTANTIATE

}  // namespace colossus::kernels::cuda::attn
