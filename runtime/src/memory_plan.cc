#include "colossus/memory_plan.h"

#include <utility>

#include "colossus/check.h"
#include "absl/strings/str_format.h"

namespace colossus {
namespace {
size_t RoundUp(size_t n, size_t a) { return (n + a - 1) / a * a; }
}  // namespace

MemoryPlan::MemoryPlan(kernels::Backend* backend, std::string group, size_t align_bytes)
    : backend_(backend), group_(std::move(group)), align_(align_bytes) {
  // 4 at least: Allocate zero-fills the arena as f32 words. At most 256: the base's.
  CHECK(align_ >= 4 && align_ <= 256 && (align_ & (align_ - 1)) == 0)
      << "MemoryPlan '" << group_ << "': alignment " << align_
      << " is not a power of two in [4, 256]";
}

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
  bytes_ = RoundUp(bytes_ + t.bytes(), align_);
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
