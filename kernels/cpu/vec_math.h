// An exp that the compiler can vectorize, for the float path of the CPU ops.
//
// Why: without -ffast-math, glibc's expf is an opaque scalar call, so every loop that
// contains one (softmax rows in attention and cross-entropy, GELU) runs one element at
// a time; this inline version is branch-free arithmetic that GCC turns into SIMD code
// under `#pragma omp simd`. The double overload is std::exp: the float64 instantiation
// is the gradient-check reference and should carry no approximation error.
//
// Accuracy (checked by tests/kernels/cpu_ops_test.cc over a dense sweep): relative
// error under 1 float ulp for x in [-87.3, 88.3], where exp(x) is a normal float.
// Beyond: exactly 0 below -87.7 (subnormal results are approximate, none are needed:
// softmax arguments are <= 0 and their sum is >= 1), +inf above 88.4 (true overflow
// is at 88.72; the sliver in between is not needed either), NaN for NaN.
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
  // The clamp keeps n = round(x log2 e) in [-127, 128], where 2^n, built in the
  // exponent bits below, is 0 at n = -127 and +inf at n = 128: underflow and overflow
  // come out of the arithmetic itself. (Explicit selects for them would be
  // jump-threaded into branches by GCC, and a loop with branches does not vectorize.)
  // A NaN x fails both comparisons and stays NaN throughout.
  constexpr float kLo = -88.3762626647949f;  // x log2 e = -127.4999...
  constexpr float kHi = 89.0f;               // x log2 e = 128.4...
  float xc = x < kLo ? kLo : x;
  xc = xc > kHi ? kHi : xc;
  // Round x log2(e) to the nearest integer by adding 1.5 * 2^23: this avoids a
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
  return p * std::bit_cast<float>(static_cast<uint32_t>(ni + 127) << 23);
}

}  // namespace colossus::kernels::cpu
