#include "cpu/reduce_kernels.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "colossus/check.h"
#include "colossus/kernels/dtype.h"  // header-only: FloatToBf16 / Bf16ToFloat
#include "cpu/half.h"

namespace colossus::comm::internal {
namespace {

struct Sum {
  template <typename T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      // Wrap like NCCL instead of signed-overflow UB.
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    } else {
      return a + b;
    }
  }
};
struct Max {
  template <typename T>
  static T Apply(T a, T b) { return std::max(a, b); }
};
struct Min {
  template <typename T>
  static T Apply(T a, T b) { return std::min(a, b); }
};

template <typename T, typename Op>
void ReduceNative(void* out, const void* a, const void* b, size_t n) {
  T* o = static_cast<T*>(out);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; ++i) o[i] = Op::Apply(x[i], y[i]);
}

// 16-bit floats: widen, combine in float, round back.
template <float (*ToFloat)(uint16_t), uint16_t (*FromFloat)(float), typename Op>
void Reduce16(void* out, const void* a, const void* b, size_t n) {
  uint16_t* o = static_cast<uint16_t*>(out);
  const uint16_t* x = static_cast<const uint16_t*>(a);
  const uint16_t* y = static_cast<const uint16_t*>(b);
  for (size_t i = 0; i < n; ++i) o[i] = FromFloat(Op::Apply(ToFloat(x[i]), ToFloat(y[i])));
}

template <typename Op>
ReduceFn ForType(DataType dtype) {
  switch (dtype) {
    case DataType::kF32: return &ReduceNative<float, Op>;
    case DataType::kI32: return &ReduceNative<int32_t, Op>;
    case DataType::kI64: return &ReduceNative<int64_t, Op>;
    case DataType::kBF16:
      return &Reduce16<&kernels::Bf16ToFloat, &kernels::FloatToBf16, Op>;
    case DataType::kF16: return &Reduce16<&HalfToFloat, &FloatToHalf, Op>;
  }
  CHECK(false) << "invalid dtype " << static_cast<int>(dtype);
  return nullptr;
}

template <typename T>
void DivideNative(void* data, size_t n, int divisor) {
  T* p = static_cast<T*>(data);
  const T d = static_cast<T>(divisor);
  for (size_t i = 0; i < n; ++i) p[i] = p[i] / d;
}

template <float (*ToFloat)(uint16_t), uint16_t (*FromFloat)(float)>
void Divide16(void* data, size_t n, int divisor) {
  uint16_t* p = static_cast<uint16_t*>(data);
  const float d = static_cast<float>(divisor);
  for (size_t i = 0; i < n; ++i) p[i] = FromFloat(ToFloat(p[i]) / d);
}

}  // namespace

ReduceFn GetReduceFn(DataType dtype, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return ForType<Sum>(dtype);
    case ReduceOp::kMax: return ForType<Max>(dtype);
    case ReduceOp::kMin: return ForType<Min>(dtype);
  }
  CHECK(false) << "invalid reduce op " << static_cast<int>(op);
  return nullptr;
}

void DivideInPlace(void* data, size_t n, DataType dtype, int divisor) {
  CHECK(divisor > 0) << "divide by " << divisor;
  if (divisor == 1) return;
  switch (dtype) {
    case DataType::kF32: return DivideNative<float>(data, n, divisor);
    case DataType::kI32: return DivideNative<int32_t>(data, n, divisor);
    case DataType::kI64: return DivideNative<int64_t>(data, n, divisor);
    case DataType::kBF16: return Divide16<&kernels::Bf16ToFloat, &kernels::FloatToBf16>(data, n, divisor);
    case DataType::kF16: return Divide16<&HalfToFloat, &FloatToHalf>(data, n, divisor);
  }
  CHECK(false) << "invalid dtype " << static_cast<int>(dtype);
}

}  // namespace colossus::comm::internal
