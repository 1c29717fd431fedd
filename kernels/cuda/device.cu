#include "colossus/kernels/cuda_device.h"

#include <cuda_runtime.h>

namespace colossus::kernels {

CudaProbe ProbeCudaDevices() {
  CudaProbe probe;
  cudaRuntimeGetVersion(&probe.runtime_version);
  // Without a driver this fails and leaves 0: the caller reports "no driver".
  if (cudaDriverGetVersion(&probe.driver_version) != cudaSuccess) probe.driver_version = 0;

  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    probe.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    // Clear the sticky error state so later CUDA calls in this process start clean.
    cudaGetLastError();
    return probe;
  }
  if (count == 0) {
    probe.reason = "cudaGetDeviceCount: 0 devices";
    return probe;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    CudaDeviceInfo info;
    info.index = i;
    info.name = prop.name;
    info.sm_major = prop.major;
    info.sm_minor = prop.minor;
    info.total_memory = prop.totalGlobalMem;
    info.multiprocessors = prop.multiProcessorCount;
    probe.devices.push_back(std::move(info));
  }
  if (probe.devices.empty()) probe.reason = "cudaGetDeviceProperties failed on every device";
  return probe;
}

}  // namespace colossus::kernels
