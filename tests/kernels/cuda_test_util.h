// Helpers for the CUDA backend tests: a fixture that skips without a GPU, device arrays
// that upload and download through the backend in any float dtype, NaN poisoning, and
// the norm-wise comparison the CUDA issue names (||out - ref|| / ||ref||).
//
// The same tests build twice: colossus_cuda_test runs them on a GPU through
// MakeCudaBackend (skipping without one), and colossus_cuda_emulation_test, compiled with
// COLOSSUS_TEST_EMULATED_CUDA, runs the kernels' source on the CPU
// (cuda_emulated_backend.cc), so they are exercised on every machine.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "colossus/kernels/backend.h"
#include "colossus/kernels/cuda_backend.h"
#include "kernels/cuda_emulated_backend.h"
#include "kernels/gradcheck.h"

namespace colossus::kernels {
#if defined(COLOSSUS_TEST_EMULATED_CUDA)
inline constexpr bool kEmulatedCuda = true;
#else
inline constexpr bool kEmulatedCuda = false;
#endif
}  // namespace colossus::kernels

namespace colossus::kernels::testing {

// The two dtype paths every op is checked on: all-f32 (1e-5) and bf16 activations (2e-2).
struct DtypePath {
  DType act;
  double rtol;
};
inline const DtypePath kF32Path{DType::kF32, 1e-5};
inline const DtypePath kBf16Path{DType::kBF16, 2e-2};
inline std::string PathName(const DtypePath& p) { return DTypeName(p.act); }

// x rounded to `dtype` and back (the values a bf16 tensor can hold).
inline std::vector<float> Quantize(std::vector<float> x, DType dtype) {
  if (dtype == DType::kBF16) {
    for (float& v : x) v = Bf16ToFloat(FloatToBf16(v));
  }
  return x;
}

inline std::vector<float> RandomFloats(size_t n, std::mt19937_64& rng, double lo, double hi) {
  return Cast<float>(Uniform(n, rng, lo, hi));
}

// A device array owned by the test, freed through its backend.
class DeviceArray {
 public:
  DeviceArray(Backend* backend, DType dtype, int64_t n) : backend_(backend), dtype_(dtype), n_(n) {
    absl::StatusOr<void*> p = backend->Allocate(static_cast<size_t>(n) * DTypeSize(dtype));
    EXPECT_TRUE(p.ok()) << p.status();
    data_ = p.ok() ? *p : nullptr;
  }
  ~DeviceArray() { backend_->Free(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  View view() const { return View(data_, dtype_, n_); }
  void* data() const { return data_; }
  float* f32() const { return static_cast<float*>(data_); }
  int32_t* i32() const { return static_cast<int32_t*>(data_); }
  int64_t size() const { return n_; }

  // Writes host values converted to the array's dtype (bf16 rounds to nearest even).
  void Upload(const std::vector<float>& host) {
    ASSERT_EQ(static_cast<int64_t>(host.size()), n_);
    if (dtype_ == DType::kF32) {
      backend_->CopyFromHost(data_, host.data(), host.size() * 4);
    } else if (dtype_ == DType::kBF16) {
      std::vector<uint16_t> bits(host.size());
      for (size_t i = 0; i < host.size(); ++i) bits[i] = FloatToBf16(host[i]);
      backend_->CopyFromHost(data_, bits.data(), bits.size() * 2);
    } else {
      FAIL() << "Upload: dtype " << DTypeName(dtype_) << " not handled";
    }
  }
  void UploadInts(const std::vector<int32_t>& host) {
    ASSERT_EQ(static_cast<int64_t>(host.size()), n_);
    backend_->CopyFromHost(data_, host.data(), host.size() * 4);
  }
  std::vector<float> Download() const {
    std::vector<float> out(static_cast<size_t>(n_));
    if (dtype_ == DType::kF32) {
      backend_->CopyToHost(out.data(), data_, out.size() * 4);
    } else if (dtype_ == DType::kBF16) {
      std::vector<uint16_t> bits(out.size());
      backend_->CopyToHost(bits.data(), data_, bits.size() * 2);
      for (size_t i = 0; i < out.size(); ++i) out[i] = Bf16ToFloat(bits[i]);
    } else {
      ADD_FAILURE() << "Download: dtype " << DTypeName(dtype_) << " not handled";
    }
    return out;
  }
  // Every byte 0xFF: NaN in f32, bf16 and f16 alike, so an element an op forgets to
  // write fails the comparison. Enqueued on the backend's stream (which is
  // non-blocking: a plain cudaMemset would not be ordered before the op).
  void Poison() {
#if defined(COLOSSUS_TEST_EMULATED_CUDA)
    std::memset(data_, 0xFF, static_cast<size_t>(n_) * DTypeSize(dtype_));
#else
    const cudaError_t err =
        cudaMemsetAsync(data_, 0xFF, static_cast<size_t>(n_) * DTypeSize(dtype_),
                        static_cast<cudaStream_t>(CudaStreamOf(*backend_)));
    ASSERT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
#endif
  }

 private:
  Backend* backend_;
  DType dtype_;
  int64_t n_;
  void* data_ = nullptr;
};

// ||actual - expected|| / ||expected|| <= rtol, and no NaN or infinity anywhere in
// actual (an unwritten, poisoned element fails). An all-zero expected must match
// exactly within rtol in absolute terms.
inline void ExpectRelativeClose(const std::string& what, const std::vector<float>& actual,
                                const std::vector<float>& expected, double rtol) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double diff2 = 0, ref2 = 0;
  size_t nonfinite = 0, first_nonfinite = 0, worst = 0;
  double worst_err = -1;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i])) {
      if (nonfinite++ == 0) first_nonfinite = i;
      continue;
    }
    const double d = static_cast<double>(actual[i]) - expected[i];
    diff2 += d * d;
    ref2 += static_cast<double>(expected[i]) * expected[i];
    if (std::fabs(d) > worst_err) {
      worst_err = std::fabs(d);
      worst = i;
    }
  }
  EXPECT_EQ(nonfinite, 0u) << what << ": " << nonfinite << " of " << actual.size()
                           << " elements are NaN or infinite (unwritten?), the first at ["
                           << first_nonfinite << "]";
  const double rel = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  EXPECT_LE(rel, rtol) << what << ": relative error " << rel << " (||diff|| / ||ref||) over "
                       << actual.size() << " elements; worst at [" << worst << "]: actual "
                       << (actual.empty() ? 0.0f : actual[worst]) << " expected "
                       << (expected.empty() ? 0.0f : expected[worst]);
}

// Fixture: a CUDA backend on GPU 0 (the test skips, naming the CUDA error, where there
// is none), or the emulated one, and a CPU reference backend.
class CudaTest : public SeededTest {
 protected:
  void SetUp() override {
#if defined(COLOSSUS_TEST_EMULATED_CUDA)
    gpu_ = MakeEmulatedCudaBackend();
#else
    absl::StatusOr<std::unique_ptr<Backend>> gpu = MakeCudaBackend(0);
    if (!gpu.ok()) GTEST_SKIP() << "no CUDA device: " << gpu.status().message();
    gpu_ = *std::move(gpu);
#endif
    cpu_ = MakeCpuBackend(2);
  }

  // A GPU array of `dtype` holding `host` (converted).
  std::unique_ptr<DeviceArray> Gpu(const std::vector<float>& host, DType dtype) {
    auto a = std::make_unique<DeviceArray>(gpu_.get(), dtype, static_cast<int64_t>(host.size()));
    a->Upload(host);
    return a;
  }
  std::unique_ptr<DeviceArray> GpuInts(const std::vector<int32_t>& host) {
    auto a = std::make_unique<DeviceArray>(gpu_.get(), DType::kI32,
                                           static_cast<int64_t>(host.size()));
    a->UploadInts(host);
    return a;
  }
  // A GPU array of n elements poisoned with NaN.
  std::unique_ptr<DeviceArray> GpuPoisoned(int64_t n, DType dtype) {
    auto a = std::make_unique<DeviceArray>(gpu_.get(), dtype, n);
    a->Poison();
    return a;
  }

  std::unique_ptr<Backend> gpu_;
  std::unique_ptr<Backend> cpu_;
};

}  // namespace colossus::kernels::testing
