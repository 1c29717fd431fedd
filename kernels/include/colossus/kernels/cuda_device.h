// Finding CUDA devices without requiring one.
//
// Every Colossus binary links the CUDA runtime statically and must run on machines
// with no GPU and no driver; there cudaGetDeviceCount fails ("CUDA driver version is
// insufficient", "no CUDA-capable device"), and that failure is an answer, not a crash.
#pragma once

#include <string>
#include <vector>

namespace colossus::kernels {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;          // e.g. "NVIDIA H100 80GB HBM3"
  int sm_major = 0;          // compute capability
  int sm_minor = 0;
  size_t total_memory = 0;   // bytes
  int multiprocessors = 0;
};

struct CudaProbe {
  std::vector<CudaDeviceInfo> devices;  // empty when there is no usable GPU
  std::string reason;                   // why `devices` is empty (the CUDA error text)
  int runtime_version = 0;              // e.g. 13000
  int driver_version = 0;               // 0 when no driver is installed
};

// Safe to call on any machine, any number of times; thread-safe.
CudaProbe ProbeCudaDevices();

}  // namespace colossus::kernels
