// GELU, tanh approximation (GPT-2's), forward and backward: elementwise maps
// (elementwise.cuh for the launch geometry). Written as the CPU reference writes it,
// 0.5 (1 + tanh u) = 1 / (1 + exp(-2u)): one exp, and no cancellation for negative x.
// expf, not __expf: the f32 path is held to 1e-5 against the CPU, and the kernel is
// bandwidth-bound either way.
#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.797884560802865355879892119868763737f;
constexpr float kGeluCubic = 0.044715f;

template <typename T>
struct GeluForwardOp {
  T* out;
  const T* inp;
  template <int N>
  __device__ __forceinline__ void Apply(int64_t i) const {
    float x[N];
    LoadVec<N>(inp + i, x);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float u = kSqrt2OverPi * (x[k] + kGeluCubic * x[k] * x[k] * x[k]);
      x[k] = x[k] / (1.0f + expf(-2.0f * u));
    }
    StoreVec<N>(out + i, x);
  }
};

template <typename T>
struct GeluBackwardOp {
  T* dinp;
  const T* inp;
  const T* dout;
  template <int N>
  __device__ __forceinline__ void Apply(int64_t i) const {
    float x[N], d[N];
    LoadVec<N>(inp + i, x);
    LoadVec<N>(dout + i, d);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float u = kSqrt2OverPi * (x[k] + kGeluCubic * x[k] * x[k] * x[k]);
      const float s = 1.0f / (1.0f + expf(-2.0f * u));  // sigmoid(2u)
      const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x[k] * x[k]);
      d[k] = (s + x[k] * s * (1.0f - s) * 2.0f * du) * d[k];
    }
    StoreVec<N>(dinp + i, d);
  }
};

}  // namespace

void GeluForward(const LaunchContext& ctx, DType act, void* out, const void* inp, int64_t n) {
  DispatchFloat(act, "GeluForward", [&](auto tag) {
    using E = decltype(tag);
    LaunchMap(ctx, GeluForwardOp<E>{static_cast<E*>(out), static_cast<const E*>(inp)}, n,
              Aligned16(out) && Aligned16(inp));
  });
}

void GeluBackward(const LaunchContext& ctx, DType act, void* dinp, const void* inp,
                  const void* dout, int64_t n) {
  DispatchFloat(act, "GeluBackward", [&](auto tag) {
    using E = decltype(tag);
    LaunchMap(ctx,
              GeluBackwardOp<E>{static_cast<E*>(dinp), static_cast<const E*>(inp),
                                static_cast<const E*>(dout)},
              n, Aligned16(dinp) && Aligned16(inp) && Aligned16(dout));
  });
}

}  // namespace colossus::kernels::cuda
