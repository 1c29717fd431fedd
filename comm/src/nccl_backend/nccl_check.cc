#include "nccl_backend/nccl_check.h"

#include "absl/strings/str_cat.h"

namespace colossus::comm::internal {

absl::Status CudaStatus(cudaError_t error, const char* call, const char* file, int line) {
  const std::string msg = absl::StrCat(call, ": ", cudaGetErrorName(error), " (",
                                       cudaGetErrorString(error), ") at ", file, ":", line);
  switch (error) {
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorInitializationError:
    case cudaErrorSystemNotReady:
    case cudaErrorCompatNotSupportedOnDevice:
      return absl::UnavailableError(msg);
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status NcclStatus(ncclResult_t result, const char* call, const char* file, int line) {
  std::string msg = absl::StrCat(call, ": ", ncclGetErrorString(result), " at ", file, ":", line);
  // ncclGetLastError(nullptr): the last error text of this thread (a null comm is
  // allowed and is all we can safely pass here).
  if (const char* last = ncclGetLastError(nullptr); last != nullptr && last[0] != '\0') {
    absl::StrAppend(&msg, " (", last, ")");
  }
  switch (result) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(msg);
    case ncclRemoteError:
    case ncclSystemError:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace colossus::comm::internal
