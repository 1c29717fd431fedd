// Host element types for every float dtype and the dtype-generic ops built on them:
// Fill, Cast and SumSquares take Views because they serve f32, bf16, f16 and f64 alike.
//
// bf16 is a struct around its bits (so templates can tell it from an integer) and
// converts with dtype.h's round-to-nearest-even helpers; f16 is the compiler's
// _Float16 (GCC >= 12 and Clang on x86-64), whose conversions are correctly rounded.
#pragma once

#include <cstdint>
#include <type_traits>

#include "colossus/check.h"
#include "colossus/kernels/dtype.h"

namespace colossus::kernels::cpu {

struct Bf16 {
  uint16_t bits;
};
using Half = _Float16;

// Every element type widens to double exactly.
inline double Widen(double x) { return x; }
inline double Widen(float x) { return x; }
inline double Widen(Half x) { return static_cast<double>(x); }
inline double Widen(Bf16 x) { return Bf16ToFloat(x.bits); }

// Narrow<E>(x): x rounded to E, to nearest even. (bf16 from a double rounds twice,
// through float; the two differ only when x lies within 2^-24 relative of a bf16
// rounding boundary.)
template <typename E>
E Narrow(double x) {
  if constexpr (std::is_same_v<E, Bf16>) {
    return Bf16{FloatToBf16(static_cast<float>(x))};
  } else {
    return static_cast<E>(x);
  }
}

// Calls fn(E{}) with E the element type of `dtype` (float, double, Half, Bf16);
// aborts naming `op` and `arg` for a non-float dtype.
template <typename Fn>
void VisitFloatType(DType dtype, const char* op, const char* arg, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: fn(float{}); return;
    case DType::kF64: fn(double{}); return;
    case DType::kF16: fn(Half{}); return;
    case DType::kBF16: fn(Bf16{}); return;
    case DType::kI32: break;
  }
  CHECK(false) << op << ": " << arg << " has dtype " << DTypeName(dtype)
               << ", expected a float dtype (f32, bf16, f16, f64)";
}

// x[i] = value (rounded to x.dtype) for every element; i32 is allowed too
// (value truncated toward zero), for target buffers.
void Fill(View x, double value);
// out[i] = in[i] converted, for i < n, between any two float dtypes.
void Cast(View out, View in, int64_t n);
// sum of x[i]^2 for i < n, accumulated in double over fixed-size blocks, so the
// result does not depend on the thread count.
double SumSquares(View x, int64_t n);

}  // namespace colossus::kernels::cpu
