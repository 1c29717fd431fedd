// An exp that the compiler can vectorize, for the float path of the CPU ops.
//
// Why: without -ffast-math, glibc's expf is an opaque scalar call, so every loop that
// contains one (softmax rows in attention and cross-entropy, GELU) runs one element at
// a time; this inline version is branch-free arithmetic that GCC turns into SIMD code
// under `#pragma omp simd`. The double overload is std::exp: the float64 instantiation
// is the gradient-check reference and should carry no approximation error.
//
// Accuracy (checked by tests/kernels/cpu_ops_test.cc over a dense sweep): relative
// error under 1 float ulp for x in [-87.3, 88.3]; exactly 0 below (no subnormal
// results), +inf above, NaN for NaN.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace colossus::kernels::cpu {

inline double Exp(double x) { return std::exp(x); }

// Cephes' expf: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial,
// 2^n built directly in the exponent bits.
inline float Exp(float x) {
  constexpr float kHi = 88.3762626647949f;  // largest x with a finite result here
  constexpr float kLo = -87.3365447504f;    // exp(kLo) = FLT_MIN: no subnormal results
  // std::max/min return their first argument when the other comparison is false, so a
  // NaN x stays NaN through the clamp.
  const float xc = std::min(std::max(x, kLo), kHi);
  // Round x*log2(e) to the nearest integer by adding 1.5 * 2^23: this avoids a
  // float->int conversion (undefined for NaN) and vectorizes on plain SSE.
  constexpr float kMagic = 12582912.0f;
  const float t = xc * 1.44269504088896341f + kMagic;
  const float n = t - kMagic;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kMagic);
  // Cody-Waite: ln2 split into a part exact in float and a correction.
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const float result = p * std::bit_cast<float>((ni + 127) << 23);
  if (x < kLo) return 0.0f;  // selects, not branches, once vectorized
  if (x > kHi) return std::numeric_limits<float>::infinity();
  return result;
}

}  // namespace colossus::kernels::cpu
