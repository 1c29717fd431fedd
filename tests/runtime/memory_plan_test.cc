#include "colossus/memory_plan.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace colossus {
namespace {

TEST(MemoryPlan, LaysOutAlignedNonOverlappingZeroedTensors) {
  auto backend = kernels::MakeCpuBackend(1);
  MemoryPlan plan(backend.get(), "test");
  plan.Add("a", {3, 5}, kernels::DType::kF32);  // 60 bytes -> padded to 64
  plan.Add("b", {7}, kernels::DType::kI32);
  plan.Add("c", {2, 2, 2}, kernels::DType::kBF16);
  ASSERT_TRUE(plan.Allocate().ok());
  ASSERT_EQ(plan.size(), 3u);
  char* prev_end = nullptr;
  for (const Tensor& t : plan.tensors()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u) << t.name;
    if (prev_end != nullptr) EXPECT_GE(static_cast<char*>(t.data), prev_end) << t.name;
    prev_end = static_cast<char*>(t.data) + t.bytes();
  }
  EXPECT_LE(static_cast<size_t>(prev_end - static_cast<char*>(plan.base())), plan.bytes());
  const auto* bytes = static_cast<const unsigned char*>(plan.base());
  for (size_t i = 0; i < plan.bytes(); ++i) ASSERT_EQ(bytes[i], 0) << "byte " << i;
  EXPECT_EQ(plan[0].DebugString(), "a [3, 5] f32");
}

// Alignment of 16 elements of each plan's dtype gives the same element offsets: the
// model's bf16 compute copies mirror its f32 master weights this way.
TEST(MemoryPlan, SixteenElementAlignmentMirrorsElementOffsetsAcrossDtypes) {
  auto backend = kernels::MakeCpuBackend(1);
  MemoryPlan f32(backend.get(), "f32", 64), bf16(backend.get(), "bf16", 32), packed(backend.get(), "packed", 4);
  const std::vector<std::vector<int64_t>> shapes = {{5}, {3, 7}, {16}, {33}, {2, 2}};
  for (const auto& shape : shapes) {
    f32.Add("t", shape, kernels::DType::kF32);
    bf16.Add("t", shape, kernels::DType::kBF16);
    packed.Add("t", shape, kernels::DType::kF32);
  }
  ASSERT_TRUE(f32.Allocate().ok() && bf16.Allocate().ok() && packed.Allocate().ok());
  for (size_t i = 0; i < shapes.size(); ++i) {
    const auto f_off = (static_cast<char*>(f32[i].data) - static_cast<char*>(f32.base())) / 4;
    const auto b_off = (static_cast<char*>(bf16[i].data) - static_cast<char*>(bf16.base())) / 2;
    EXPECT_EQ(f_off, b_off) << "tensor " << i;
    EXPECT_EQ(f_off % 16, 0) << "tensor " << i;
  }
  // Alignment 4 packs f32 tensors end to end: 5 + 21 + 16 + 33 + 4 elements.
  EXPECT_EQ(packed.bytes(), 79u * 4);
  EXPECT_EQ(static_cast<char*>(packed[1].data) - static_cast<char*>(packed.base()), 5 * 4);
}

TEST(MemoryPlan, EmptyPlanAllocatesNothing) {
  auto backend = kernels::MakeCpuBackend(1);
  MemoryPlan plan(backend.get(), "empty");
  EXPECT_TRUE(plan.Allocate().ok());
  EXPECT_EQ(plan.bytes(), 0u);
}

}  // namespace
}  // namespace colossus
