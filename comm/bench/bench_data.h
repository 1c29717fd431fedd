// colossus-bench's check mode: input values from (rank, index), the expected output of
// each collective computed from them independently of the code under test, and the
// comparison that counts wrong elements.
//
// Floating values are multiples of 0.5 in [-15, 15] (never all ones or zeros): sums
// over up to 16 ranks are exact in bf16 and f16, so sum, max and min compare exactly;
// avg is compared with a tolerance (NCCL pre-scales each input by 1/n in the element
// type, which rounds). Integers use the full width and include negatives.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "colossus/comm/types.h"
#include "colossus/kernels/dtype.h"
#include "cpu/half.h"

namespace colossus::comm::bench {

inline double Value(DataType t, int rank, size_t i) {
  switch (t) {
    case DataType::kF32:
    case DataType::kBF16:
    case DataType::kF16:
      return static_cast<double>(static_cast<int64_t>((static_cast<size_t>(rank) * 37 + i * 11) % 61) - 30) * 0.5;
    case DataType::kI32:
      return static_cast<double>(int64_t{rank} * 1000003 + static_cast<int64_t>(i % 100000) * 7 - 5000);
    case DataType::kI64:
      return static_cast<double>((int64_t{rank} + 1) * (int64_t{1} << 40) +
                                 static_cast<int64_t>(i % 100000) * 13 - 777);
  }
  return 0;
}

inline void StoreValue(DataType t, void* buf, size_t i, double v) {
  char* p = static_cast<char*>(buf) + i * DataTypeSize(t);
  switch (t) {
    case DataType::kF32: { const float f = static_cast<float>(v); std::memcpy(p, &f, 4); break; }
    case DataType::kBF16: { const uint16_t h = kernels::FloatToBf16(static_cast<float>(v)); std::memcpy(p, &h, 2); break; }
    case DataType::kF16: { const uint16_t h = internal::FloatToHalf(static_cast<float>(v)); std::memcpy(p, &h, 2); break; }
    case DataType::kI32: { const int32_t x = static_cast<int32_t>(v); std::memcpy(p, &x, 4); break; }
    case DataType::kI64: { const int64_t x = static_cast<int64_t>(v); std::memcpy(p, &x, 8); break; }
  }
}

inline double LoadValue(DataType t, const void* buf, size_t i) {
  const char* p = static_cast<const char*>(buf) + i * DataTypeSize(t);
  switch (t) {
    case DataType::kF32: { float f; std::memcpy(&f, p, 4); return f; }
    case DataType::kBF16: { uint16_t h; std::memcpy(&h, p, 2); return kernels::Bf16ToFloat(h); }
    case DataType::kF16: { uint16_t h; std::memcpy(&h, p, 2); return internal::HalfToFloat(h); }
    case DataType::kI32: { int32_t x; std::memcpy(&x, p, 4); return x; }
    case DataType::kI64: { int64_t x; std::memcpy(&x, p, 8); return static_cast<double>(x); }
  }
  return 0;
}

inline bool IsFloating(DataType t) {
  return t == DataType::kF32 || t == DataType::kBF16 || t == DataType::kF16;
}

// The reduction over ranks 0..n-1 of Value(t, r, i).
inline double Reduced(DataType t, ReduceOp op, int n, size_t i) {
  double acc = Value(t, 0, i);
  for (int r = 1; r < n; ++r) {
    const double v = Value(t, r, i);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg: acc += v; break;
      case ReduceOp::kMax: acc = std::max(acc, v); break;
      case ReduceOp::kMin: acc = std::min(acc, v); break;
    }
  }
  if (op == ReduceOp::kAvg) {
    acc = IsFloating(t) ? acc / n : std::trunc(acc / n);
  }
  return acc;
}

// Whether `got` is an acceptable result for `expected`.
inline bool Matches(DataType t, ReduceOp op, double got, double expected) {
  if (op != ReduceOp::kAvg || !IsFloating(t)) return got == expected;
  const double rel = t == DataType::kF32 ? 1e-5 : t == DataType::kF16 ? 1e-2 : 5e-2;
  return std::fabs(got - expected) <= rel * (1.0 + std::fabs(expected));
}

}  // namespace colossus::comm::bench
