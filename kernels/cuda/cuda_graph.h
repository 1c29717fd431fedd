// Stream capture into a CUDA graph, for CudaBackend::BeginCapture / EndCapture
// (backend.h, "Graphs").
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colossus/kernels/backend.h"

namespace colossus::kernels::cuda {

// Starts capturing the work enqueued on `stream` (of GPU `device`) by this thread. Thread
// local mode: a call from this thread that is unsafe while capturing (cudaMalloc, a
// synchronize) fails instead of silently breaking the capture.
absl::Status BeginStreamCapture(cudaStream_t stream, int device);

// Ends the capture and instantiates the graph; its Replay launches it on `stream`.
// Errors name the call that failed (e.g. a capture invalidated by an unsupported call).
absl::StatusOr<std::unique_ptr<OpGraph>> EndStreamCapture(cudaStream_t stream, int device);

}  // namespace colossus::kernels::cuda
