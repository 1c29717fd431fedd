// kernels/cuda/attention.h on a GPU against the CPU reference backend, on fresh random
// inputs: the flash kernels (bf16, hs 64 and 128) at 2e-2 and the reference kernels (f32)
// at 1e-5 relative (||got - ref|| / ||ref||), every output poisoned with NaN first so
// that an unwritten element fails. Skips, naming the CUDA error, without a device.
//
// The same kernel source also runs without a GPU in cuda_attention_emulation_test.cc;
// this test is the one that checks the compiled code on the real tensor cores.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "colossus/kernels/backend.h"
#include "colossus/kernels/cuda_device.h"
#include "colossus/kernels/dtype.h"
#include "cuda/attention.h"

namespace colossus::kernels::cuda {
namespace {

#define ASSERT_CUDA(call)                                                      \
  do {                                                                         \
    const cudaError_t err_ = (call);                                           \
    ASSERT_EQ(err_, cudaSuccess) << #call << ": " << cudaGetErrorString(err_); \
  } while (0)

// Device memory owned by the test.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(n) {
    const cudaError_t err = cudaMalloc(&ptr, n > 0 ? n : 1);
    EXPECT_EQ(err, cudaSuccess) << "cudaMalloc(" << n << "): " << cudaGetErrorString(err);
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  // Every byte 0xFF: NaN as f32 and as bf16.
  void Poison() { EXPECT_EQ(cudaMemset(ptr, 0xFF, bytes), cudaSuccess); }
};

// Host floats as `dtype` bytes, and back.
std::vector<unsigned char> Encode(const std::vector<float>& x, DType dtype) {
  std::vector<unsigned char> bytes(x.size() * DTypeSize(dtype));
  if (dtype == DType::kF32) {
    std::memcpy(bytes.data(), x.data(), bytes.size());
  } else {
    for (size_t i = 0; i < x.size(); ++i) {
      const uint16_t b = FloatToBf16(x[i]);
      std::memcpy(bytes.data() + 2 * i, &b, 2);
    }
  }
  return bytes;
}

std::vector<float> Decode(const void* dev, size_t n, DType dtype) {
  std::vector<unsigned char> bytes(n * DTypeSize(dtype));
  EXPECT_EQ(cudaMemcpy(bytes.data(), dev, bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  std::vector<float> x(n);
  if (dtype == DType::kF32) {
    std::memcpy(x.data(), bytes.data(), bytes.size());
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      x[i] = Bf16ToFloat(b);
    }
  }
  return x;
}

// ||got - want|| / ||want||, with every element of `got` required to be finite.
void ExpectClose(const std::string& what, const std::vector<float>& got,
                 const std::vector<float>& want, double rtol) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double num = 0, den = 0;
  size_t nonfinite = 0, first_bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) {
      if (nonfinite++ == 0) first_bad = i;
      continue;
    }
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  EXPECT_EQ(nonfinite, 0u) << what << ": " << nonfinite << " non-finite elements (unwritten?), "
                           << "the first at [" << first_bad << "]";
  const double rel = std::sqrt(num / (den > 0 ? den : 1));
  EXPECT_LE(rel, rtol) << what << ": relative error " << rel << " over " << got.size()
                       << " elements";
}

struct Shape {
  int B, T, NH, hs;
  DType dtype;
  // Bytes by which every device view is offset from its allocation: 2 makes the bf16
  // views 16-byte misaligned, which must route hs 64/128 to the reference kernels.
  int misalign = 0;
};

std::string Name(const ::testing::TestParamInfo<Shape>& info) {
  const Shape& s = info.param;
  return std::string(DTypeName(s.dtype)) + "_B" + std::to_string(s.B) + "_T" + std::to_string(s.T) +
         "_NH" + std::to_string(s.NH) + "_hs" + std::to_string(s.hs) +
         (s.misalign ? "_misaligned" : "");
}

class CudaAttentionTest : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    const CudaProbe probe = ProbeCudaDevices();
    if (probe.devices.empty()) GTEST_SKIP() << "no CUDA device: " << probe.reason;
  }
};

TEST_P(CudaAttentionTest, ForwardAndBackwardMatchCpuReference) {
  const Shape s = GetParam();
  const int C = s.NH * s.hs;
  const int64_t btc = static_cast<int64_t>(s.B) * s.T * C;
  const int64_t n_lse = static_cast<int64_t>(s.B) * s.NH * s.T;
  const double rtol = s.dtype == DType::kF32 ? 1e-5 : 2e-2;
  const size_t es = DTypeSize(s.dtype);

  // Fresh inputs, rounded to the device dtype so both sides see the same values.
  std::random_device seed_source;
  const uint32_t seed = seed_source();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> qkv(3 * btc), dout(btc);
  for (float& x : qkv) x = normal(rng);
  for (float& x : dout) x = normal(rng);
  if (s.dtype == DType::kBF16) {
    for (float& x : qkv) x = Bf16ToFloat(FloatToBf16(x));
    for (float& x : dout) x = Bf16ToFloat(FloatToBf16(x));
  }

  // CPU reference: forward, then backward from its own out and lse.
  std::vector<float> out_ref(btc), lse_ref(n_lse), dqkv_ref(3 * btc);
  auto cpu = MakeCpuBackend();
  cpu->AttentionForward(View(out_ref.data(), btc), lse_ref.data(), View(qkv.data(), 3 * btc), s.B,
                        s.T, C, s.NH);
  cpu->AttentionBackward(View(dqkv_ref.data(), 3 * btc), View(dout.data(), btc),
                         View(qkv.data(), 3 * btc), View(out_ref.data(), btc), lse_ref.data(), s.B,
                         s.T, C, s.NH);

  const size_t off = static_cast<size_t>(s.misalign);
  DeviceBuffer d_qkv(3 * btc * es + off), d_out(btc * es + off), d_lse(n_lse * 4),
      d_dout(btc * es + off), d_dqkv(3 * btc * es + off),
      d_scratch(AttentionBackwardScratchBytes(s.B, s.T, C, s.NH));
  auto at = [off](DeviceBuffer& b) { return static_cast<char*>(b.ptr) + off; };
  const auto qkv_bytes = Encode(qkv, s.dtype), dout_bytes = Encode(dout, s.dtype);
  ASSERT_CUDA(cudaMemcpy(at(d_qkv), qkv_bytes.data(), qkv_bytes.size(), cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemcpy(at(d_dout), dout_bytes.data(), dout_bytes.size(), cudaMemcpyHostToDevice));
  d_out.Poison();
  d_lse.Poison();
  d_dqkv.Poison();
  d_scratch.Poison();  // the backward must not depend on the scratch's contents

  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const View v_qkv(at(d_qkv), s.dtype, 3 * btc), v_out(at(d_out), s.dtype, btc),
      v_dout(at(d_dout), s.dtype, btc), v_dqkv(at(d_dqkv), s.dtype, 3 * btc);
  float* lse = static_cast<float*>(d_lse.ptr);
  AttentionForward(v_out, lse, v_qkv, s.B, s.T, C, s.NH, stream);
  AttentionBackward(v_dqkv, v_dout, v_qkv, v_out, lse, d_scratch.ptr, s.B, s.T, C, s.NH, stream);
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  ASSERT_CUDA(cudaStreamDestroy(stream));

  ExpectClose("out", Decode(at(d_out), btc, s.dtype), out_ref, rtol);
  ExpectClose("lse", Decode(lse, n_lse, DType::kF32), lse_ref, rtol);
  // The device backward ran from the device's own out and lse (as training does), the
  // CPU's from its own: the comparison covers the whole forward + backward pipeline.
  const std::vector<float> dqkv = Decode(at(d_dqkv), 3 * btc, s.dtype);
  ExpectClose("dqkv", dqkv, dqkv_ref, rtol);
  // Each of dq, dk, dv on its own, so a small part cannot hide under a large one.
  for (int part = 0; part < 3; ++part) {
    std::vector<float> got, want;
    for (int64_t row = 0; row < static_cast<int64_t>(s.B) * s.T; ++row) {
      const int64_t base = (row * 3 + part) * C;
      got.insert(got.end(), dqkv.begin() + base, dqkv.begin() + base + C);
      want.insert(want.end(), dqkv_ref.begin() + base, dqkv_ref.begin() + base + C);
    }
    ExpectClose(std::string("d") + "qkv"[part], got, want, rtol);
  }
}

// B*NH stays small at large T: the CPU reference is O(T^2).
constexpr DType kBf16 = DType::kBF16;
constexpr DType kF32 = DType::kF32;
INSTANTIATE_TEST_SUITE_P(
    Flash, CudaAttentionTest,
    ::testing::Values(Shape{2, 17, 3, 64, kBf16}, Shape{2, 64, 3, 64, kBf16},
                      Shape{1, 1000, 2, 64, kBf16}, Shape{1, 1024, 2, 64, kBf16},
                      Shape{1, 2048, 2, 64, kBf16}, Shape{2, 17, 3, 128, kBf16},
                      Shape{2, 64, 3, 128, kBf16}, Shape{1, 1000, 2, 128, kBf16},
                      Shape{1, 1024, 2, 128, kBf16}, Shape{1, 2048, 2, 128, kBf16}),
    Name);
INSTANTIATE_TEST_SUITE_P(Reference, CudaAttentionTest,
                         ::testing::Values(Shape{2, 17, 3, 64, kF32}, Shape{2, 64, 3, 64, kF32},
                                           Shape{1, 1000, 2, 64, kF32}, Shape{1, 1024, 2, 64, kF32},
                                           Shape{1, 2048, 2, 64, kF32}, Shape{2, 17, 3, 128, kF32},
                                           Shape{1, 1000, 2, 128, kF32},
                                           Shape{1, 2048, 2, 128, kF32},
                                           // head sizes the flash kernels do not take, both dtypes
                                           Shape{2, 100, 3, 48, kF32}, Shape{2, 100, 3, 48, kBf16},
                                           // bf16 views off 16-byte alignment: reference path
                                           Shape{2, 100, 2, 64, kBf16, 2}),
                         Name);

}  // namespace
}  // namespace colossus::kernels::cuda
