// The CUDA-event OpTimer (op_timer.h): marks are events on the backend's stream.
#pragma once

#include <memory>

#include "colossus/kernels/op_timer.h"

namespace colossus::kernels::cuda {

// REQUIRES: backend came from MakeCudaBackend (CudaStreamOf aborts otherwise).
std::unique_ptr<OpTimer> MakeCudaEventTimer(const Backend& backend);

}  // namespace colossus::kernels::cuda
