#include "colossus/memory_plan.h"

#include <utility>

#include "colossus/check.h"
#include "absl/strings/str_format.h"

namespace colossus {
namespace {
constexpr size_t kAlign = 64;
size_t RoundUp(size_t n, size_t a) { return (n + a - 1) / a * a; }
}  // namespace

MemoryPlan::MemoryPlan(kernels::Backend* backend, std::string group)
    : backend_(backend), group_(std::move(group)) {}

MemoryPlan::~MemoryPlan() {
  if (base_ != nullptr) backend_->Free(base_);
}

size_t MemoryPlan::Add(std::string name, std::vector<int64_t> shape, kernels::DType dtype) {
  CHECK(!allocated_) << "MemoryPlan '" << group_ << "': Add(" << name << ") after Allocate()";
  Tensor t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.dtype = dtype;
  t.device = backend_->kind();
  offsets_.push_back(bytes_);
  bytes_ = RoundUp(bytes_ + t.bytes(), kAlign);
  tensors_.push_back(std::move(t));
  return tensors_.size() - 1;
}

absl::Status MemoryPlan::Allocate() {
  CHECK(!allocated_) << "MemoryPlan '" << group_ << "' allocated twice";
  allocated_ = true;
  if (bytes_ == 0) return absl::OkStatus();
  auto mem = backend_->Allocate(bytes_);
  if (!mem.ok()) {
    return absl::Status(mem.status().code(),
                        absl::StrFormat("allocating %s (%d tensors, %d bytes): %s", group_,
                                        tensors_.size(), bytes_, mem.status().message()));
  }
  base_ = *mem;
  // Zeroed once, so the alignment gaps between tensors hold zeros forever: a flat
  // view over the whole arena (all-reduce, norms, the optimizer) then reads no garbage.
  backend_->Fill(kernels::View(base_, kernels::DType::kF32, static_cast<int64_t>(bytes_ / 4)),
                 0.0f);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    tensors_[i].data = static_cast<char*>(base_) + offsets_[i];
  }
  return absl::OkStatus();
}

}  // namespace colossus
