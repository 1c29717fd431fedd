// Choosing the backend a process computes on.
//
// "auto" picks CUDA where a usable GPU is present, else the CPU;
// a machine with no GPU or no driver is an ordinary answer here, never a crash.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "colossus/kernels/backend.h"

namespace colossus {

struct BackendChoice {
  std::unique_ptr<kernels::Backend> backend;
  std::string why;  // one line for the log: what was picked and why
};

// device: "auto", "cpu", "cuda" or "cuda:N". cpu_threads: OpenMP threads for the CPU
// backend (0 = the OpenMP default, i.e. all cores or OMP_NUM_THREADS).
// Errors: InvalidArgument for an unknown device string or GPU index; Unavailable when
// "cuda" is asked for and there is no usable GPU (the message carries the CUDA error
// text). "auto" never fails for lack of a GPU: it falls back to the CPU and says why.
absl::StatusOr<BackendChoice> CreateBackend(const std::string& device, int cpu_threads);

}  // namespace colossus
