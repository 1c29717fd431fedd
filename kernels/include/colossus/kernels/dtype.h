// Element types and buffer views shared by every kernel backend.
//
// kernels/ is the bottom layer: it knows nothing of models, communicators or the
// runtime's Tensor. A View is the one currency its ops take: a raw pointer into the
// memory of the backend the op runs on, the element type, and the element count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace colossus::kernels {

enum class DType : uint8_t {
  kF32 = 0,
  kBF16 = 1,
  kF16 = 2,
  kI32 = 3,
  kF64 = 4,  // CPU only: the float64 gradient checks in tests.
};

constexpr size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI32: return 4;
    case DType::kF64: return 8;
  }
  return 0;
}

constexpr const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI32: return "i32";
    case DType::kF64: return "f64";
  }
  return "?";
}

enum class DeviceKind : uint8_t { kCPU = 0, kCUDA = 1 };

constexpr const char* DeviceKindName(DeviceKind d) {
  return d == DeviceKind::kCPU ? "cpu" : "cuda";
}

// A non-owning view of `numel` contiguous elements of `dtype` in backend memory.
// Ops document which views they read and which they write; a View with
// data == nullptr is "absent" where an op allows it (for example a matmul bias).
struct View {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t numel = 0;

  View() = default;
  View(void* d, DType t, int64_t n) : data(d), dtype(t), numel(n) {}
  View(float* d, int64_t n) : data(d), dtype(DType::kF32), numel(n) {}
  View(double* d, int64_t n) : data(d), dtype(DType::kF64), numel(n) {}

  bool empty() const { return data == nullptr; }
  size_t bytes() const { return static_cast<size_t>(numel) * DTypeSize(dtype); }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
};

// bfloat16 conversions on the host (round to nearest even), used by casts on the
// CPU and by tests that compare bf16 device results against fp32 references.
inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN stays NaN
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16ToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace colossus::kernels
