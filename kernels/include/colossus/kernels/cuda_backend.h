// The CUDA backend: every op of kernels::Backend as hand-written CUDA kernels, Linear
// layers through cuBLASLt, attention through the FlashAttention-style kernel pair.
//
// Dtypes (backend.h, "Floating-point dtypes"): compute_dtype() is bf16. Each op takes
// all-f32 views (the path the tests hold to 1e-5 against the CPU) or bf16 activations
// and weights; parameter gradients are f32 in both, statistics f32, AdamW's master
// weights and moments f32 with a bf16 (or f32) param_copy. Accumulation is fp32
// everywhere (fp64 in SumSquares).
//
// Streams: one CUDA stream per backend, created with it; every op is enqueued on it and
// returns at once. CopyToHost, CopyFromHost and Synchronize block; Free synchronizes
// the device (cudaFree). The stream is non-blocking with respect to the legacy default
// stream: work of other libraries must order itself against CudaStreamOf().
//
// Determinism: every reduction is in a fixed order (column sums, SumSquares, softmax
// merges) except the token-embedding gradient, which adds with atomics (reproducible
// to rounding). Fixed orders depend on the SM count: results are bitwise reproducible
// on one kind of GPU.
//
// CUDA graphs: the ops allocate nothing after their first call at a given shape (the
// cuBLASLt plan cache and the backend's scratch grow on first use), so a training step
// can be captured after one warm-up step.
//
// Thread safety: one thread at a time per backend (Backend's rule); ops set the current
// device to the backend's first, so backends on different GPUs can share a thread.
//
// Building for another GPU: the kernels are plain CUDA C++ with no sm_90-only
// instructions outside attention's tensor-core paths; configure with
// -DCMAKE_CUDA_ARCHITECTURES=80 (A100), 89 (L4, RTX 4090) or "90a;100a", for example.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "colossus/kernels/backend.h"

namespace colossus::kernels {

// A backend on GPU `device`. Errors: Unavailable with the CUDA error text when there
// is no usable GPU or driver (e.g. "cudaGetDeviceCount(&count): cudaErrorInsufficientDriver
// (CUDA driver version is insufficient for CUDA runtime version)"); InvalidArgument for
// a device index outside [0, device count); ResourceExhausted when the stream, the
// cuBLASLt handle or its workspace cannot be created. Never aborts.
absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int device = 0);

// The cudaStream_t, as void*, on which every op of `backend` runs: for CUDA events
// around ops (benchmarks), graph capture, and libraries (NCCL) that must order their
// work with the backend's. REQUIRES: backend came from MakeCudaBackend (aborts
// otherwise).
void* CudaStreamOf(const Backend& backend);

}  // namespace colossus::kernels
