// The host reduction kernels and f16 conversions against the compiler's _Float16 and
// plain double arithmetic.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cpu/half.h"
#include "cpu/reduce_kernels.h"
#include "gtest/gtest.h"
#include "test_values.h"

namespace colossus::comm {
namespace {

using internal::FloatToHalf;
using internal::HalfToFloat;

uint16_t CompilerHalf(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

TEST(HalfTest, EveryHalfWidensExactly) {
  for (uint32_t u = 0; u <= 0xffff; ++u) {
    _Float16 h;
    const uint16_t bits = static_cast<uint16_t>(u);
    std::memcpy(&h, &bits, 2);
    const float want = static_cast<float>(h);
    const float got = HalfToFloat(bits);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << u;
    } else {
      EXPECT_EQ(internal::FloatBits(got), internal::FloatBits(want)) << std::hex << u;
    }
  }
}

TEST(HalfTest, NarrowingRoundsToNearestEvenLikeTheCompiler) {
  std::vector<float> probes = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.99f, 65520.0f, 1e9f,
                               -1e9f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 6.1e-5f,
                               std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::denorm_min()};
  // Every float whose low 13 bits sit at and around the rounding boundary, across the
  // whole exponent range, plus random ones.
  for (uint32_t e = 0; e < 255; ++e) {
    for (uint32_t low : {0x0000u, 0x0fffu, 0x1000u, 0x1001u, 0x1fffu, 0x3000u}) {
      for (uint32_t m : {0x000000u, 0x002000u, 0x7fe000u, 0x155000u}) {
        probes.push_back(internal::BitsFloat((e << 23) | m | low));
        probes.push_back(internal::BitsFloat(0x80000000u | (e << 23) | m | low));
      }
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) probes.push_back(internal::BitsFloat(rng() & 0x7fffffffu));
  for (float f : probes) {
    if (std::isnan(f)) continue;
    EXPECT_EQ(FloatToHalf(f), CompilerHalf(f)) << f << " bits " << std::hex << internal::FloatBits(f);
  }
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::nanf("")))));
}

TEST(ReduceKernelsTest, EveryTypeAndOpMatchesDoubleArithmetic) {
  using testing::Load;
  using testing::Store;
  constexpr size_t n = 257;
  for (DataType t : testing::kAllTypes) {
    for (ReduceOp op : testing::kAllOps) {
      const size_t es = DataTypeSize(t);
      std::vector<char> a(n * es), b(n * es), out(n * es);
      for (size_t i = 0; i < n; ++i) {
        Store(t, a.data(), i, testing::Value(t, 1, i));
        Store(t, b.data(), i, testing::Value(t, 2, i));
      }
      internal::ReduceFn fn = internal::GetReduceFn(t, op);
      fn(out.data(), a.data(), b.data(), n);
      // Aliased output, as Gloo's ring calls it.
      fn(a.data(), a.data(), b.data(), n);
      for (size_t i = 0; i < n; ++i) {
        const double x = testing::Value(t, 1, i), y = testing::Value(t, 2, i);
        const double want = op == ReduceOp::kMax ? std::max(x, y)
                            : op == ReduceOp::kMin ? std::min(x, y)
                                                   : x + y;
        EXPECT_EQ(Load(t, out.data(), i), want) << DataTypeName(t) << " " << ReduceOpName(op) << " " << i;
        EXPECT_EQ(Load(t, a.data(), i), want) << DataTypeName(t) << " aliased " << i;
      }
    }
  }
}

TEST(ReduceKernelsTest, IntegerSumsWrapInsteadOfOverflowing) {
  int32_t a = std::numeric_limits<int32_t>::max(), b = 1, out = 0;
  internal::GetReduceFn(DataType::kI32, ReduceOp::kSum)(&out, &a, &b, 1);
  EXPECT_EQ(out, std::numeric_limits<int32_t>::min());
}

TEST(ReduceKernelsTest, DivideInPlace) {
  float f[3] = {3.0f, -3.0f, 1.0f};
  internal::DivideInPlace(f, 3, DataType::kF32, 3);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -1.0f);
  EXPECT_EQ(f[2], 1.0f / 3.0f);
  int64_t i[2] = {7, -7};
  internal::DivideInPlace(i, 2, DataType::kI64, 2);
  EXPECT_EQ(i[0], 3);
  EXPECT_EQ(i[1], -3);  // truncation toward zero
  uint16_t h[1] = {FloatToHalf(3.0f)};
  internal::DivideInPlace(h, 1, DataType::kF16, 4);
  EXPECT_EQ(HalfToFloat(h[0]), 0.75f);
  uint16_t bf[1] = {testing::DoubleToBf16(1.0)};
  internal::DivideInPlace(bf, 1, DataType::kBF16, 3);
  EXPECT_EQ(testing::Bf16ToDouble(bf[0]), testing::Bf16ToDouble(testing::DoubleToBf16(1.0 / 3)));
}

}  // namespace
}  // namespace colossus::comm
