// IEEE binary16 <-> float on the host, round to nearest even (the F16 half of what
// kernels/dtype.h does for bf16; comm may use kernels' headers but not its library,
// and kernels has no host f16 conversion).
//
// Bit manipulation after F. Giesen's "float_to_half_fast3_rtne": exact for every
// input (tests compare all 65,536 halves and a float sweep against the compiler's
// _Float16). Relies on the default FP rounding mode (no -ffast-math).
#pragma once

#include <cstdint>
#include <cstring>

namespace colossus::comm::internal {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t FloatToHalf(float f) {
  uint32_t u = FloatBits(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint16_t h;
  if (u >= (127u + 16u) << 23) {
    // |f| >= 65536 rounds to infinity; NaN stays a (quiet) NaN.
    h = u > (255u << 23) ? 0x7e00 : 0x7c00;
  } else if (u < 113u << 23) {
    // Subnormal half or zero: adding 0.5f lines the 10 mantissa bits up at the bottom
    // of the float, and the FPU's round-to-nearest-even does the rounding.
    const float magic = BitsFloat(126u << 23);
    h = static_cast<uint16_t>(FloatBits(BitsFloat(u) + magic) - (126u << 23));
  } else {
    const uint32_t mant_odd = (u >> 13) & 1u;
    // Rebias the exponent (127 -> 15) and add 0x0fff + odd: round half to even.
    u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu;
    u += mant_odd;
    h = static_cast<uint16_t>(u >> 13);
  }
  return static_cast<uint16_t>(h | (sign >> 16));
}

inline float HalfToFloat(uint16_t h) {
  constexpr uint32_t kShiftedExp = 0x7c00u << 13;
  uint32_t u = (h & 0x7fffu) << 13;
  const uint32_t exp = u & kShiftedExp;
  u += static_cast<uint32_t>(127 - 15) << 23;
  if (exp == kShiftedExp) {
    u += static_cast<uint32_t>(128 - 16) << 23;  // Inf/NaN keep an all-ones exponent
  } else if (exp == 0) {
    u += 1u << 23;  // subnormal: renormalise through float arithmetic
    u = FloatBits(BitsFloat(u) - BitsFloat(113u << 23));
  }
  return BitsFloat(u | (static_cast<uint32_t>(h & 0x8000u) << 16));
}

}  // namespace colossus::comm::internal
