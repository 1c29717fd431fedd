// Elementwise ops over Views of any float dtype per argument: Add, Accumulate, Fill,
// Cast. Each is one map over n elements (elementwise.cuh: launch geometry, vector and
// tail handling); values pass through float, so each result is rounded once.
#include <type_traits>

#include "colossus/check.h"
#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {
namespace {

// out may alias a or b: each group is read completely before it is written.
template <typename O, typename A, typename B>
struct AddOp {
  O* out;
  const A* a;
  const B* b;
  template <int N>
  __device__ __forceinline__ void Apply(int64_t i) const {
    float x[N], y[N];
    LoadVec<N>(a + i, x);
    LoadVec<N>(b + i, y);
#pragma unroll
    for (int k = 0; k < N; ++k) x[k] += y[k];
    StoreVec<N>(out + i, x);
  }
};

template <typename D, typename S>
struct AccumulateOp {
  D* dst;
  const S* src;
  template <int N>
  __device__ __forceinline__ void Apply(int64_t i) const {
    float x[N], y[N];
    LoadVec<N>(dst + i, x);
    LoadVec<N>(src + i, y);
#pragma unroll
    for (int k = 0; k < N; ++k) x[k] += y[k];
    StoreVec<N>(dst + i, x);
  }
};

template <typename T>
struct FillOp {
  T* x;
  T value;
  template <int N>
  __device__ __forceinline__ void Apply(int64_t i) const {
    Vec<T, N> packed;
#pragma unroll
    for (int k = 0; k < N; ++k) packed.v[k] = value;
    *reinterpret_cast<Vec<T, N>*>(x + i) = packed;
  }
};

template <typename D, typename S>
struct CastOp {
  D* out;
  const S* in;
  template <int N>
  __device__ __forceinline__ void Apply(int64_t i) const {
    float x[N];
    LoadVec<N>(in + i, x);
    StoreVec<N>(out + i, x);
  }
};

// Host-side value of the fill in T.
template <typename T>
T HostValue(float value) {
  if constexpr (std::is_same_v<T, float>) {
    return value;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(value);
  } else {
    return __float2half_rn(value);
  }
}

}  // namespace

void Add(const LaunchContext& ctx, View out, View a, View b, int64_t n) {
  const bool aligned = Aligned16(out.data) && Aligned16(a.data) && Aligned16(b.data);
  DispatchFloat(out.dtype, "Add", [&](auto o) {
    DispatchFloat(a.dtype, "Add", [&](auto x) {
      DispatchFloat(b.dtype, "Add", [&](auto y) {
        using O = decltype(o);
        using A = decltype(x);
        using B = decltype(y);
        LaunchMap(ctx, AddOp<O, A, B>{out.as<O>(), a.as<const A>(), b.as<const B>()}, n,
                  aligned);
      });
    });
  });
}

void Accumulate(const LaunchContext& ctx, View dst, View src, int64_t n) {
  const bool aligned = Aligned16(dst.data) && Aligned16(src.data);
  DispatchFloat(dst.dtype, "Accumulate", [&](auto d) {
    DispatchFloat(src.dtype, "Accumulate", [&](auto s) {
      using D = decltype(d);
      using S = decltype(s);
      LaunchMap(ctx, AccumulateOp<D, S>{dst.as<D>(), src.as<const S>()}, n, aligned);
    });
  });
}

void Fill(const LaunchContext& ctx, View x, float value) {
  const bool aligned = Aligned16(x.data);
  if (x.dtype == DType::kI32) {
    LaunchMap(ctx, FillOp<int32_t>{x.as<int32_t>(), static_cast<int32_t>(value)}, x.numel,
              aligned);
    return;
  }
  DispatchFloat(
      x.dtype, "Fill",
      [&](auto tag) {
        using T = decltype(tag);
        LaunchMap(ctx, FillOp<T>{x.as<T>(), HostValue<T>(value)}, x.numel, aligned);
      },
      /*allow_f16=*/true);
}

void Cast(const LaunchContext& ctx, View out, View in, int64_t n) {
  if (n == 0) return;
  if (out.dtype == in.dtype) {
    if (out.data != in.data) {
      COLOSSUS_COPY_ASYNC(out.data, in.data, n * DTypeSize(in.dtype), ctx.stream);
    }
    return;
  }
  const bool aligned = Aligned16(out.data) && Aligned16(in.data);
  DispatchFloat(
      out.dtype, "Cast",
      [&](auto o) {
        DispatchFloat(
            in.dtype, "Cast",
            [&](auto i) {
              using D = decltype(o);
              using S = decltype(i);
              LaunchMap(ctx, CastOp<D, S>{out.as<D>(), in.as<const S>()}, n, aligned);
            },
            /*allow_f16=*/true);
      },
      /*allow_f16=*/true);
}

}  // namespace colossus::kernels::cuda
