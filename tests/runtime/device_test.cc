#include "colossus/device.h"

#include "colossus/kernels/cuda_device.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

using ::testing::HasSubstr;

// On machines without a GPU (CI) "auto" must fall back to the CPU and say why, and an
// explicit "cuda" must be a clear error; with a GPU, both must give the CUDA backend.
TEST(CreateBackend, AutoAndCudaFollowWhatTheMachineHas) {
  const kernels::CudaProbe probe = kernels::ProbeCudaDevices();
  auto autod = CreateBackend("auto", 1);
  ASSERT_TRUE(autod.ok()) << autod.status();
  auto cuda = CreateBackend("cuda", 1);
  if (probe.devices.empty()) {
    EXPECT_EQ(autod->backend->kind(), kernels::DeviceKind::kCPU);
    EXPECT_THAT(autod->why, HasSubstr("no GPU"));
    EXPECT_THAT(autod->why, HasSubstr(probe.reason));
    ASSERT_FALSE(cuda.ok());
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(cuda.status().message(), HasSubstr("no GPU is usable"));
  } else {
    EXPECT_EQ(autod->backend->kind(), kernels::DeviceKind::kCUDA) << autod->why;
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    EXPECT_EQ(cuda->backend->compute_dtype(), kernels::DType::kBF16);
  }
}

TEST(CreateBackend, CpuAndBadNames) {
  auto cpu = CreateBackend("cpu", 2);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ(cpu->backend->kind(), kernels::DeviceKind::kCPU);
  EXPECT_EQ(cpu->backend->compute_dtype(), kernels::DType::kF32);
  EXPECT_THAT(CreateBackend("tpu", 0).status().message(), HasSubstr("'tpu'"));
  EXPECT_THAT(CreateBackend("cuda:x", 0).status().message(), HasSubstr("bad GPU index"));
}

}  // namespace
}  // namespace colossus
