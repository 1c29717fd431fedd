// The CUDA backend's kernels on the CPU behind a kernels::Backend (defined in
// cuda_emulated_backend.cc, part of the colossus_cuda_emulated object library): what the
// CUDA tests run on machines without a GPU. "Device" memory is host memory; the
// backend's compute dtype is bf16, like the real one's.
#pragma once

#include <memory>

#include "colossus/kernels/backend.h"

namespace colossus::kernels {

std::unique_ptr<Backend> MakeEmulatedCudaBackend();

}  // namespace colossus::kernels
