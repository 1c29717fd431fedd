#include "colossus/memory_plan.h"

#include <cstdint>

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

TEST(MemoryPlan, EmptyPlanAllocatesNothing) {
  auto backend = kernels::MakeCpuBackend(1);
  MemoryPlan plan(backend.get(), "empty");
  EXPECT_TRUE(plan.Allocate().ok());
  EXPECT_EQ(plan.bytes(), 0u);
}

}  // namespace
}  // namespace colossus
