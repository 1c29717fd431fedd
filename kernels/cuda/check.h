// Checked CUDA and cuBLASLt calls: every call of the CUDA backend goes through one of
// these macros, so a failure names the call's text, the file and the line.
//
//   COLOSSUS_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, n));  // in functions returning Status
//   COLOSSUS_CUDA_CHECK(cudaMemcpyAsync(...));          // in launch paths: aborts
//   COLOSSUS_CUBLAS_CHECK(cublasLtMatmul(...));         // cuBLASLt, aborts
//   COLOSSUS_CUDA_CHECK_LAUNCH();                       // after every <<<...>>>
//
// Launch paths abort rather than return: Backend's ops return void (a failed kernel
// launch is a bug or a dead device, and nothing downstream could recover from it),
// and an error left unreported would surface later, attributed to the wrong op.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"

namespace colossus::kernels::cuda {

// The Status for a failed call: ResourceExhausted for out-of-memory, Unavailable for
// "no usable device or driver", Internal otherwise. The message reads
// "<call>: <error name> (<error text>) at <file>:<line>".
absl::Status CudaErrorStatus(cudaError_t error, const char* call, const char* file, int line);

// Prints the same message to stderr and aborts.
[[noreturn]] void CudaFail(cudaError_t error, const char* call, const char* file, int line);
[[noreturn]] void CublasFail(cublasStatus_t status, const char* call, const char* file,
                             int line);

}  // namespace colossus::kernels::cuda

#define COLOSSUS_CUDA_RETURN_IF_ERROR(call)                                              \
  do {                                                                                   \
    const cudaError_t colossus_cuda_error_ = (call);                                     \
    if (colossus_cuda_error_ != cudaSuccess) {                                           \
      return ::colossus::kernels::cuda::CudaErrorStatus(colossus_cuda_error_, #call,     \
                                                        __FILE__, __LINE__);             \
    }                                                                                    \
  } while (0)

#define COLOSSUS_CUDA_CHECK(call)                                                        \
  do {                                                                                   \
    const cudaError_t colossus_cuda_error_ = (call);                                     \
    if (colossus_cuda_error_ != cudaSuccess) {                                           \
      ::colossus::kernels::cuda::CudaFail(colossus_cuda_error_, #call, __FILE__, __LINE__); \
    }                                                                                    \
  } while (0)

// cudaGetLastError, not cudaPeekAtLastError: a launch error is not sticky, and
// clearing it here keeps it from being reported again by the next launch.
// Kernels run on host fibers (emulate.h, attention_emulation.h): nothing to check.
#if defined(COLOSSUS_CUDA_EMULATE) || defined(COLOSSUS_ATTN_EMULATE)
#define COLOSSUS_CUDA_CHECK_LAUNCH() ((void)0)
#else
#define COLOSSUS_CUDA_CHECK_LAUNCH() COLOSSUS_CUDA_CHECK(cudaGetLastError())
#endif

#define COLOSSUS_CUBLAS_CHECK(call)                                                      \
  do {                                                                                   \
    const cublasStatus_t colossus_cublas_status_ = (call);                               \
    if (colossus_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                              \
      ::colossus::kernels::cuda::CublasFail(colossus_cublas_status_, #call, __FILE__,    \
                                            __LINE__);                                   \
    }                                                                                    \
  } while (0)
