// Shared by the attention kernels (attention*.cu); not a public header.
//
// Warp-level tensor-core primitives as inline PTX (sm_80+, so they also run on sm_90a):
//   mma.sync.m16n8k16 bf16 x bf16 -> f32, ldmatrix (plain and .trans), cp.async with
// zero fill. The fragment layouts they produce are the ones the PTX ISA documents for
// m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row-major): reg0 = A[g][2t..2t+1]   reg1 = A[g+8][2t..2t+1]
//                         reg2 = A[g][2t+8..+9]   reg3 = A[g+8][2t+8..+9]
//   B (16x8, "col"):      reg0 = B[2t..2t+1][g]   reg1 = B[2t+8..+9][g]
//   C (16x8, f32):        c0,c1 = C[g][2t..2t+1]  c2,c3 = C[g+8][2t..2t+1]
// Each 32-bit register holds two bf16, the lower index in the low half.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "colossus/kernels/dtype.h"

namespace colossus::kernels::cuda::attn {

using bf16 = __nv_bfloat16;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// The softmax scale 1/sqrt(hs), the same float expression as the CPU reference's.
inline float SoftmaxScale(int hs) { return 1.0f / std::sqrt(static_cast<float>(hs)); }

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether attention.cu takes the flash kernels for these views: bf16, hs 64 or 128, and
// every base pointer 16-byte aligned (they read 16-byte chunks with cp.async; rows are
// 16-byte multiples at those head sizes, so only the bases matter). Else the reference.
inline bool UsesFlash(DType dtype, int hs, std::initializer_list<const void*> ptrs) {
  if (dtype != DType::kBF16 || (hs != 64 && hs != 128)) return false;
  for (const void* p : ptrs) {
    if (!Aligned16(p)) return false;
  }
  return true;
}

#if defined(COLOSSUS_ATTN_EMULATE)
}  // namespace colossus::kernels::cuda::attn
// Tests only: the same primitives over host fibers (see attention_emulation.h).
#include "cuda/attention_emulation.h"
namespace colossus::kernels::cuda::attn {
#else

// The kernels' dynamic shared memory, 16-byte aligned for cp.async and ldmatrix.
#define COLOSSUS_ATTN_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]

// What the launchers (attention_*.cu) do on the host, as macros so that the emulation
// runs the launchers themselves, not a copy of them: a launch with dynamic shared memory,
// the opt-in a kernel needs for more than 48 KB of it, and an asynchronous zero fill.
// `kernel` must be one token (a template-id's commas would split the arguments).
#define COLOSSUS_ATTN_LAUNCH(kernel, grid, block, smem_bytes, stream, ...) \
  kernel<<<(grid), (block), (smem_bytes), (stream)>>>(__VA_ARGS__)
#define COLOSSUS_ATTN_ALLOW_SMEM(kernel, smem_bytes)                                   \
  COLOSSUS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, \
                                           static_cast<int>(smem_bytes)))
#define COLOSSUS_ATTN_ZERO_ASYNC(ptr, bytes, stream) \
  COLOSSUS_CUDA_CHECK(cudaMemsetAsync((ptr), 0, (bytes), (stream)))

// ---- PTX wrappers -------------------------------------------------------------------
// The "memory" clobbers keep the compiler from moving shared-memory reads and cp.async
// bookkeeping across __syncthreads(); they cost nothing here because the kernels keep no
// other memory values in registers across them.

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// c += a * b, one m16n8k16 tile, fp32 accumulators.
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, and register
// i receives matrix i as (row g, cols 2t..2t+1).
__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// As LdMatrixX4, transposed: register i receives matrix i as (rows 2t..2t+1, col g).
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// 16 bytes global -> shared, bypassing L1; when !valid, writes 16 zero bytes and reads
// nothing (src-size 0), so `src` only has to be some valid address.
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}

// 4 bytes global -> shared (zero when !valid).
__device__ __forceinline__ void CpAsync4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0)
               : "memory");
}

__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N of this thread's committed groups are still in flight. Other
// threads' copies become visible only after a following __syncthreads().
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Plain 4-byte shared-memory accesses; functions only so that the emulation can check them.
__device__ __forceinline__ float LoadSharedF32(const float* p) { return *p; }
__device__ __forceinline__ void StoreShared32(void* p, uint32_t v) {
  *static_cast<uint32_t*>(p) = v;
}

// dst[0] += a, dst[1] += b in global memory; dst 8-byte aligned.
__device__ __forceinline__ void AtomicAdd2(float* dst, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(dst), make_float2(a, b));  // one 8-byte RED
#else
  atomicAdd(dst, a);
  atomicAdd(dst + 1, b);
#endif
}

#endif  // COLOSSUS_ATTN_EMULATE

// Two floats as one bf16x2 register (lo in the low half), round to nearest even.
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, 4);  // a register move, without type punning
  return u;
}

__device__ __forceinline__ float QuadMax(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float QuadSum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Copies rows [row0, row0 + kRows) of a [T, D] bf16 slice whose rows are `ld` elements
// apart into shared memory with row stride kStride, 16 bytes per cp.async; rows >= T are
// zero-filled (so a ragged last tile contributes exact zeros, never stale shared memory,
// which could hold NaN and poison 0 * x products).
template <int kRows, int D, int kStride, int kThreads>
__device__ __forceinline__ void LoadTileAsync(bf16* sdst, const bf16* gsrc, int row0, int T,
                                              int64_t ld, int tid) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kChunks = kRows * kChunksPerRow;
  static_assert(kChunks % kThreads == 0, "tile must split evenly over the block");
#pragma unroll
  for (int i = 0; i < kChunks / kThreads; ++i) {
    const int c = tid + i * kThreads;
    const int r = c / kChunksPerRow;
    const int col = (c % kChunksPerRow) * 8;
    const int row = row0 + r;
    const bool valid = row < T;
    const bf16* src = gsrc + static_cast<int64_t>(valid ? row : 0) * ld + col;
    CpAsync16(SmemAddr(sdst + r * kStride + col), src, valid);
  }
}

// Copies src[row0 .. row0 + kRows) (f32) into shared memory; entries >= T become 0.
template <int kRows>
__device__ __forceinline__ void LoadRowStatsAsync(float* sdst, const float* gsrc, int row0, int T,
                                                  int tid) {
  if (tid < kRows) {
    const int row = row0 + tid;
    const bool valid = row < T;
    CpAsync4(SmemAddr(sdst + tid), gsrc + (valid ? row : 0), valid);
  }
}

// ---- Launchers (host side), one per kernel family ----------------------------------
// Shapes are already checked by attention.cu; B, T > 0.

// Flash kernels: bf16, hs = D in {64, 128}.
template <int D>
void LaunchFlashForward(bf16* out, float* lse, const bf16* qkv, int B, int T, int NH,
                        cudaStream_t s);
// dq_accum [B,T,C] f32 and delta [B,NH,T] f32 are scratch.
template <int D>
void LaunchFlashBackward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                         const float* lse, float* dq_accum, float* delta, int B, int T, int NH,
                         cudaStream_t s);

// Reference kernels: E = float or bf16, any hs <= kRefMaxHeadSize.
constexpr int kRefMaxHeadSize = 256;
template <typename E>
void LaunchReferenceForward(E* out, float* lse, const E* qkv, int B, int T, int NH, int hs,
                            cudaStream_t s);
// delta [B,NH,T] f32 is scratch.
template <typename E>
void LaunchReferenceBackward(E* dqkv, const E* dout, const E* qkv, const E* out, const float* lse,
                             float* delta, int B, int T, int NH, int hs, cudaStream_t s);

}  // namespace colossus::kernels::cuda::attn
