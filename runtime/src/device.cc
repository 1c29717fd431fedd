#include "colossus/device.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "colossus/kernels/cuda_backend.h"
#include "colossus/kernels/cuda_device.h"

namespace colossus {

absl::StatusOr<BackendChoice> CreateBackend(const std::string& device, int cpu_threads) {
  BackendChoice choice;
  if (device == "cpu") {
    choice.backend = kernels::MakeCpuBackend(cpu_threads);
    choice.why = "device cpu (asked for)";
    return choice;
  }
  const bool want_cuda = device == "cuda" || absl::StartsWith(device, "cuda:");
  if (!want_cuda && device != "auto") {
    return absl::InvalidArgumentError(absl::StrFormat(
        "device '%s' is not one of auto, cpu, cuda, cuda:N", device));
  }
  int index = 0;
  if (absl::StartsWith(device, "cuda:") && !absl::SimpleAtoi(device.substr(5), &index)) {
    return absl::InvalidArgumentError(absl::StrFormat("device '%s': bad GPU index", device));
  }

  const kernels::CudaProbe probe = kernels::ProbeCudaDevices();
  if (probe.devices.empty()) {
    if (want_cuda) {
      return absl::UnavailableError(absl::StrFormat(
          "device %s asked for, but no GPU is usable here (%s)", device, probe.reason));
    }
    choice.backend = kernels::MakeCpuBackend(cpu_threads);
    choice.why = absl::StrFormat("device cpu (auto: no GPU, %s)", probe.reason);
    return choice;
  }
  if (index < 0 || index >= static_cast<int>(probe.devices.size())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "device '%s': this machine has %d GPU(s)", device, probe.devices.size()));
  }
  const int chosen = want_cuda ? index : 0;
  auto cuda = kernels::MakeCudaBackend(chosen);
  if (!cuda.ok()) {
    // A GPU that is listed but cannot be used (out of memory, a driver fault) is an
    // error when asked for by name; "auto" says why and falls back to the CPU.
    if (want_cuda) return cuda.status();
    choice.backend = kernels::MakeCpuBackend(cpu_threads);
    choice.why = absl::StrFormat("device cpu (auto: %s unusable: %s)", probe.devices[0].name,
                                 cuda.status().message());
    return choice;
  }
  choice.backend = std::move(*cuda);
  choice.why = absl::StrFormat("device cuda:%d %s (%s)", chosen, probe.devices[chosen].name,
                               want_cuda ? "asked for" : "auto: a GPU is present");
  return choice;
}

}  // namespace colossus
