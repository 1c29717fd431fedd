// Fill, Cast and SumSquares for every float dtype.
#include "cpu/convert.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "colossus/check.h"
#include "cpu/parallel.h"

namespace colossus::kernels::cpu {

void Fill(View x, double value) {
  if (x.dtype == DType::kI32) {
    CHECK(std::isfinite(value) && std::fabs(value) < 2147483648.0)
        << "Fill: value " << value << " does not fit an i32 view";
    const int32_t v = static_cast<int32_t>(value);
    int32_t* p = x.as<int32_t>();
#pragma omp parallel for simd schedule(static) if (x.numel >= kMinParallelWork)
    for (int64_t i = 0; i < x.numel; ++i) p[i] = v;
    return;
  }
  VisitFloatType(x.dtype, "Fill", "x", [&](auto tag) {
    using E = decltype(tag);
    const E v = Narrow<E>(value);
    E* p = x.as<E>();
#pragma omp parallel for simd schedule(static) if (x.numel >= kMinParallelWork)
    for (int64_t i = 0; i < x.numel; ++i) p[i] = v;
  });
}

void Cast(View out, View in, int64_t n) {
  CHECK(n >= 0 && out.numel >= n && in.numel >= n)
      << "Cast: n = " << n << " but out has " << out.numel << " and in has " << in.numel
      << " elements";
  VisitFloatType(in.dtype, "Cast", "in", [&](auto src_tag) {
    VisitFloatType(out.dtype, "Cast", "out", [&](auto dst_tag) {
      using S = decltype(src_tag);
      using D = decltype(dst_tag);
      const S* src = in.as<S>();
      D* dst = out.as<D>();
      if constexpr (std::is_same_v<S, D>) {
        if (n > 0 && dst != src) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(S));
      } else {
        // Through double: every source widens to it exactly, so each element is
        // rounded once (bf16 targets excepted, see Narrow).
#pragma omp parallel for simd schedule(static) if (n >= kMinParallelWork)
        for (int64_t i = 0; i < n; ++i) dst[i] = Narrow<D>(Widen(src[i]));
      }
    });
  });
}

double SumSquares(View x, int64_t n) {
  CHECK(n >= 0 && x.numel >= n) << "SumSquares: n = " << n << " but x has " << x.numel
                                << " elements";
  // Fixed-size blocks, summed in block order at the end: the same additions in the
  // same order whatever the thread count, so gradient clipping (and with it the
  // weights) is bitwise reproducible across machines.
  constexpr int64_t kBlock = 4096;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  double* partial = ThreadScratch<double, 0>(nblocks);
  VisitFloatType(x.dtype, "SumSquares", "x", [&](auto tag) {
    using E = decltype(tag);
    const E* p = x.as<E>();
#pragma omp parallel for schedule(static) if (n >= kMinParallelWork)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t lo = blk * kBlock;
      const int64_t hi = std::min(n, lo + kBlock);
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = lo; i < hi; ++i) {
        const double e = Widen(p[i]);
        s += e * e;
      }
      partial[blk] = s;
    }
  });
  double total = 0;
  for (int64_t blk = 0; blk < nblocks; ++blk) total += partial[blk];
  return total;
}

}  // namespace colossus::kernels::cpu
