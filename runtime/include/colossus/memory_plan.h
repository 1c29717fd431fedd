// MemoryPlan: tensors of one group (parameters, gradients, optimizer state,
// activations) declared up front, then backed by a single backend allocation.
//
// This is how the runtime keeps its promise of no allocation per step: a model plans
// its groups at start-up, and every Tensor afterwards is a view into an arena.
// Tensors are laid out in declaration order, each at an align_bytes-aligned offset
// (by default 64, a cache line; 256-byte for the base), padding included in bytes().
// Plans of tensors of the same element counts in the same order have the same ELEMENT
// offsets when align_bytes is 16 elements of their dtype (64 for f32, 32 for bf16): the
// model's bf16 compute copies mirror its f32 master weights that way, so one
// elementwise op (AdamW) can cover all of them. The arena is
// zero-filled at Allocate, and no op writes the gaps, so they stay zero.
// Thread safety: none. The arena is freed by the destructor.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "colossus/kernels/backend.h"
#include "colossus/tensor.h"

namespace colossus {

class MemoryPlan {
 public:
  // `backend` must outlive the plan. `group` names it in errors and memory reports.
  // REQUIRES: align_bytes is a power of two from 4 to 256.
  MemoryPlan(kernels::Backend* backend, std::string group, size_t align_bytes = 64);
  ~MemoryPlan();
  MemoryPlan(const MemoryPlan&) = delete;
  MemoryPlan& operator=(const MemoryPlan&) = delete;

  // Declares a tensor and returns its index. REQUIRES: Allocate() not yet called.
  size_t Add(std::string name, std::vector<int64_t> shape, kernels::DType dtype);
  // Makes the one allocation, zero-fills it and points every tensor into it.
  // Errors name the group and the byte count when the device is out of memory.
  absl::Status Allocate();

  const std::string& group() const { return group_; }
  const Tensor& operator[](size_t i) const { return tensors_[i]; }
  const std::vector<Tensor>& tensors() const { return tensors_; }
  size_t size() const { return tensors_.size(); }
  void* base() const { return base_; }
  size_t bytes() const { return bytes_; }
  bool allocated() const { return base_ != nullptr || (bytes_ == 0 && allocated_); }

 private:
  kernels::Backend* backend_;
  std::string group_;
  size_t align_;
  std::vector<Tensor> tensors_;
  std::vector<size_t> offsets_;
  void* base_ = nullptr;
  size_t bytes_ = 0;
  bool allocated_ = false;
};

}  // namespace colossus
