#include "cuda/check.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace colossus::kernels::cuda {
namespace {

std::string Message(cudaError_t error, const char* call, const char* file, int line) {
  return absl::StrCat(call, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error),
                      ") at ", file, ":", line);
}

}  // namespace

absl::Status CudaErrorStatus(cudaError_t error, const char* call, const char* file, int line) {
  std::string message = Message(error, call, file, line);
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(std::move(message));
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorInitializationError:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorSystemNotReady:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return absl::UnavailableError(std::move(message));
    default:
      return absl::InternalError(std::move(message));
  }
}

void CudaFail(cudaError_t error, const char* call, const char* file, int line) {
  std::fprintf(stderr, "CUDA call failed: %s\n", Message(error, call, file, line).c_str());
  std::fflush(stderr);
  std::abort();
}

void CublasFail(cublasStatus_t status, const char* call, const char* file, int line) {
  std::fprintf(stderr, "cuBLASLt call failed: %s: %s (%s) at %s:%d\n", call,
               cublasLtGetStatusName(status), cublasLtGetStatusString(status), file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace colossus::kernels::cuda
