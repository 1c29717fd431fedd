// Test data for collectives, computed from (rank, index) alone, independently of the
// code under test.
//
// Floating values are multiples of 0.5 in [-15, 15]: every partial sum of up to four
// ranks is exact in bf16 and f16, so results compare exactly. Integers use the full
// width (i64 values need more than 32 bits) and include negatives. No buffer is all
// ones or zeros.
//
// Encoding to the wire format uses the compiler's _Float16 for f16 and a plain
// truncation for bf16 (exact: the values carry no bits below bf16's precision), so
// nothing here shares code with comm's own conversions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "colossus/comm/types.h"

namespace colossus::comm::testing {

inline double Value(DataType t, int rank, size_t i) {
  switch (t) {
    case DataType::kF32:
    case DataType::kBF16:
    case DataType::kF16:
      return static_cast<double>(static_cast<int64_t>((rank * 37 + i * 11) % 61) - 30) * 0.5;
    case DataType::kI32:
      return static_cast<double>(int64_t{rank} * 1000003 + static_cast<int64_t>(i % 100000) * 7 - 5000);
    case DataType::kI64:
      return static_cast<double>((int64_t{rank} + 1) * (int64_t{1} << 40) +
                                 static_cast<int64_t>(i % 100000) * 13 - 777);
  }
  return 0;
}

// Round-to-nearest-even double -> bf16 through float (both roundings are innocuous
// for the values used: see the header comment).
inline uint16_t DoubleToBf16(double d) {
  const float f = static_cast<float>(d);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline double Bf16ToDouble(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t DoubleToF16(double d) {
  const _Float16 h = static_cast<_Float16>(d);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

inline double F16ToDouble(uint16_t u) {
  _Float16 h;
  std::memcpy(&h, &u, 2);
  return static_cast<double>(static_cast<float>(h));
}

// Writes `v` as element i of a buffer of type t. Integers must be exact in `v`.
inline void Store(DataType t, void* buf, size_t i, double v) {
  switch (t) {
    case DataType::kF32: static_cast<float*>(buf)[i] = static_cast<float>(v); return;
    case DataType::kBF16: static_cast<uint16_t*>(buf)[i] = DoubleToBf16(v); return;
    case DataType::kF16: static_cast<uint16_t*>(buf)[i] = DoubleToF16(v); return;
    case DataType::kI32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v); return;
    case DataType::kI64: static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v); return;
  }
}

inline double Load(DataType t, const void* buf, size_t i) {
  switch (t) {
    case DataType::kF32: return static_cast<const float*>(buf)[i];
    case DataType::kBF16: return Bf16ToDouble(static_cast<const uint16_t*>(buf)[i]);
    case DataType::kF16: return F16ToDouble(static_cast<const uint16_t*>(buf)[i]);
    case DataType::kI32: return static_cast<const int32_t*>(buf)[i];
    case DataType::kI64: return static_cast<double>(static_cast<const int64_t*>(buf)[i]);
  }
  return 0;
}

// The integers above stay far below 2^53, so doubles hold them exactly.
inline double Expected(DataType t, ReduceOp op, int size, size_t i) {
  double acc = Value(t, 0, i);
  for (int r = 1; r < size; ++r) {
    const double v = Value(t, r, i);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg: acc += v; break;
      case ReduceOp::kMax: acc = std::max(acc, v); break;
      case ReduceOp::kMin: acc = std::min(acc, v); break;
    }
  }
  if (op == ReduceOp::kAvg) {
    if (t == DataType::kI32 || t == DataType::kI64) {
      acc = static_cast<double>(static_cast<int64_t>(acc) / size);  // truncation
    } else {
      acc /= size;
    }
  }
  // Round to the dtype as the result is stored.
  switch (t) {
    case DataType::kF32: return static_cast<float>(acc);
    case DataType::kBF16: return Bf16ToDouble(DoubleToBf16(acc));
    case DataType::kF16: return F16ToDouble(DoubleToF16(acc));
    default: return acc;
  }
}

inline constexpr DataType kAllTypes[] = {DataType::kF32, DataType::kBF16, DataType::kF16,
                                         DataType::kI32, DataType::kI64};
inline constexpr ReduceOp kAllOps[] = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax,
                                       ReduceOp::kMin};

// A byte buffer filled with a pattern no correct result produces by accident.
inline std::vector<char> Poisoned(size_t bytes) { return std::vector<char>(bytes, '\x5a'); }

}  // namespace colossus::comm::testing
