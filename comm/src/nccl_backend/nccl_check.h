// Checked NCCL and CUDA runtime calls for comm/ (comm does not link kernels' CUDA code,
// so it has its own pair of macros). A failure becomes an absl::Status whose message
// reads "<call>: <error name> (<error text>) at <file>:<line>".
//
//   COLOSSUS_COMM_CUDA_RETURN_IF_ERROR(cudaSetDevice(d));
//   COLOSSUS_NCCL_RETURN_IF_ERROR(ncclAllReduce(...));   // ncclInProgress is not an error
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include "absl/status/status.h"

namespace colossus::comm::internal {

// Unavailable for "no usable device or driver", ResourceExhausted for out-of-memory,
// Internal otherwise.
absl::Status CudaStatus(cudaError_t error, const char* call, const char* file, int line);

// InvalidArgument for ncclInvalidArgument/ncclInvalidUsage, Unavailable for
// ncclRemoteError and ncclSystemError (a peer or the network went away), Internal
// otherwise. The message includes ncclGetLastError's text when there is one.
absl::Status NcclStatus(ncclResult_t result, const char* call, const char* file, int line);

}  // namespace colossus::comm::internal

#define COLOSSUS_COMM_CUDA_RETURN_IF_ERROR(call)                                          \
  do {                                                                                    \
    const cudaError_t colossus_comm_cuda_error_ = (call);                                 \
    if (colossus_comm_cuda_error_ != cudaSuccess) {                                       \
      return ::colossus::comm::internal::CudaStatus(colossus_comm_cuda_error_, #call,     \
                                                    __FILE__, __LINE__);                  \
    }                                                                                     \
  } while (0)

#define COLOSSUS_NCCL_RETURN_IF_ERROR(call)                                               \
  do {                                                                                    \
    const ncclResult_t colossus_nccl_result_ = (call);                                    \
    if (colossus_nccl_result_ != ncclSuccess && colossus_nccl_result_ != ncclInProgress) { \
      return ::colossus::comm::internal::NcclStatus(colossus_nccl_result_, #call,         \
                                                    __FILE__, __LINE__);                  \
    }                                                                                     \
  } while (0)

// The Status of a call, for code that must clean up before returning.
#define COLOSSUS_COMM_CUDA_STATUS(call)                                                   \
  ([&]() -> ::absl::Status {                                                              \
    const cudaError_t e_ = (call);                                                        \
    return e_ == cudaSuccess ? ::absl::OkStatus()                                         \
                             : ::colossus::comm::internal::CudaStatus(e_, #call, __FILE__, \
                                                                      __LINE__);          \
  }())
#define COLOSSUS_NCCL_STATUS(call)                                                        \
  ([&]() -> ::absl::Status {                                                              \
    const ncclResult_t r_ = (call);                                                       \
    return (r_ == ncclSuccess || r_ == ncclInProgress)                                    \
               ? ::absl::OkStatus()                                                       \
               : ::colossus::comm::internal::NcclStatus(r_, #call, __FILE__, __LINE__);   \
  }())
