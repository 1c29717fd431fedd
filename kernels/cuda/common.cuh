// Device-side building blocks shared by the CUDA kernels: element conversions, packed
// 16-byte accesses, warp and block reductions, and the host-side dtype dispatch.
//
// Element types are float, __nv_bfloat16 and __half. Every kernel computes in float
// (fp32 accumulation); storage types are converted at the load and the store, rounding
// to nearest even.
//
// Vector accesses: a kernel templated on kVec moves kVec consecutive elements per
// access through Vec<T, kVec>, 16 bytes for kVec = 16 / sizeof(T) (a single LDG.128 /
// STG.128), 32 for f32 with kVec = 8 (two). The launcher picks kVec > 1 only when
// every pointer involved is 16-byte aligned and every row length (or n) is a multiple
// of kVec, so vector code never needs a tail; otherwise it launches the kVec = 1
// instantiation of the same kernel, whose loops then cover every element one by one.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "colossus/check.h"
#include "colossus/kernels/dtype.h"

// COLOSSUS_LAUNCH(kernel, grid, block, stream, args...): kernel<<<grid, block, 0, stream>>>
// (args...), or, in the CPU emulation the kernel tests run without a GPU (emulate.h),
// the same kernel on host fibers. `kernel` must be one token (a function or a local
// function pointer): a template-id's commas would split the macro's arguments.
// COLOSSUS_COPY_ASYNC(dst, src, bytes, stream): a device-to-device copy on the stream
// (a memmove of host memory in the emulation).
#if defined(COLOSSUS_CUDA_EMULATE)
#include "cuda/emulate.h"
#else
#define COLOSSUS_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#define COLOSSUS_COPY_ASYNC(dst, src, bytes, stream) \
  COLOSSUS_CUDA_CHECK(cudaMemcpyAsync((dst), (src), (bytes), cudaMemcpyDeviceToDevice, (stream)))
#endif

namespace colossus::kernels::cuda {

// ---- conversions ---------------------------------------------------------------------
__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) { return __float2half_rn(x); }

// Rounds x to T's precision and back: what a value looks like after a store to T.
template <typename T>
__device__ __forceinline__ float RoundTo(float x) { return ToFloat(FromFloat<T>(x)); }

// ---- packed accesses -------------------------------------------------------------------
template <typename T, int N>
struct alignas(sizeof(T) * N >= 16 ? 16 : sizeof(T) * N) Vec {
  T v[N];
};

// out[i] = p[i] for i < N, as floats. p is aligned to min(16, N * sizeof(T)) bytes.
template <int N, typename T>
__device__ __forceinline__ void LoadVec(const T* p, float (&out)[N]) {
  const Vec<T, N> packed = *reinterpret_cast<const Vec<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = ToFloat(packed.v[i]);
}

template <int N, typename T>
__device__ __forceinline__ void StoreVec(T* p, const float (&in)[N]) {
  Vec<T, N> packed;
#pragma unroll
  for (int i = 0; i < N; ++i) packed.v[i] = FromFloat<T>(in[i]);
  *reinterpret_cast<Vec<T, N>*>(p) = packed;
}

// Host: is p aligned for 16-byte accesses? (nullptr counts as aligned: absent views.)
inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- reductions --------------------------------------------------------------------------
constexpr unsigned kFullMask = 0xffffffffu;

// Butterfly sum: every lane ends with the same value, bit for bit (each step adds the
// same two numbers on both partners, and float addition is commutative).
__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}

__device__ __forceinline__ double WarpSum(double x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}

__device__ __forceinline__ float WarpMax(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    x = fmaxf(x, __shfl_xor_sync(kFullMask, x, offset));
  }
  return x;
}

// Sum over the block, returned to every thread. blockDim.x is a multiple of 32 and at
// most 1024; `shared` holds 32 values. Contains __syncthreads: every thread of the
// block must call it, and a second call may follow directly (the trailing barrier
// keeps the next call's writes from overtaking this call's reads).
template <typename F>
__device__ __forceinline__ F BlockSum(F x, F* shared) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  x = WarpSum(x);
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  F total = lane < warps ? shared[lane] : F(0);
  total = WarpSum(total);
  __syncthreads();
  return total;
}

// ---- launch geometry --------------------------------------------------------------------
// Blocks for `items` work items at `per_block` items per block, capped at `max_blocks`
// (grid-stride loops cover the rest). Never 0: callers return early on empty work.
inline unsigned BlocksFor(int64_t items, int64_t per_block, int64_t max_blocks) {
  int64_t blocks = (items + per_block - 1) / per_block;
  if (blocks > max_blocks) blocks = max_blocks;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks);
}

// ---- dtype dispatch (host) -----------------------------------------------------------------
// Calls fn(T{}) with T the device element type of `dtype`; f16 only where allowed.
// Aborts naming op and argument for any other dtype (the backend checks views before
// launching, so this fires only on a bug).
template <typename Fn>
void DispatchFloat(DType dtype, const char* op, Fn&& fn, bool allow_f16 = false) {
  switch (dtype) {
    case DType::kF32: fn(float{}); return;
    case DType::kBF16: fn(__nv_bfloat16{}); return;
    case DType::kF16:
      if (allow_f16) {
        fn(__half{});
        return;
      }
      break;
    default: break;
  }
  CHECK(false) << op << ": dtype " << DTypeName(dtype) << " is not supported by this kernel";
}

}  // namespace colossus::kernels::cuda
