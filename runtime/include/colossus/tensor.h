// Tensors: a named, shaped view into memory that a MemoryPlan owns.
//
// The runtime allocates nothing per step. Every parameter, gradient, optimizer moment
// and activation is a Tensor whose storage is carved out of one arena per group at
// start-up (memory_plan.h); a Tensor itself never owns memory and is cheap to copy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "colossus/kernels/dtype.h"

namespace colossus {

using kernels::DType;
using kernels::DeviceKind;

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::kF32;
  DeviceKind device = DeviceKind::kCPU;
  void* data = nullptr;  // backend memory; owned by the MemoryPlan that made it

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t bytes() const { return static_cast<size_t>(numel()) * kernels::DTypeSize(dtype); }
  kernels::View view() const { return kernels::View(data, dtype, numel()); }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
  // "h.0.attn.qkv.weight [2304, 768] f32"
  std::string DebugString() const;
};

}  // namespace colossus
