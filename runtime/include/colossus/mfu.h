// Model FLOPs utilisation (MFU): the arithmetic, shared by the trainer and the step
// benchmark so that both report the same figure.
//
// Model FLOPs per token = 6N + 6·L·C·T (issue 3's formula): 6N for the forward (2N) and
// backward (4N) matmuls against every parameter (N = GPTConfig::NumParameters(), which
// counts the padded embedding rows, as the model allocates them), plus 6·L·C·T for the
// attention scores and the weighted sum of values (QK^T and PV: 2·2·C·T per layer forward,
// twice that backward) over the causal half of the T x T scores. Counted per trained
// token; recomputation is not counted (that would be hardware FLOPs, not model FLOPs).
//
// MFU = flops_per_token · tokens_per_s / peak, with peak the GPU's dense bf16
// tensor-core throughput in FLOP/s (989e12 for an H100 SXM).
//
// Pure functions; thread-safe.
#pragma once

#include <string>

#include "colossus/config.h"

namespace colossus {

inline constexpr const char* kMfuFormula =
    "MFU = (6N + 6*L*C*T) FLOPs/token * tokens/s / peak dense bf16 FLOP/s";

// 6N + 6·L·C·T for `config` at sequence length T.
inline double ModelFlopsPerToken(const GPTConfig& config, int T) {
  return 6.0 * static_cast<double>(config.NumParameters()) +
         6.0 * config.n_layer * static_cast<double>(config.n_embd) * T;
}

// Dense bf16 peak in FLOP/s for a GPU named (anywhere) in `device_description`, e.g.
// Backend::Describe()'s "cuda:0 (NVIDIA H100 80GB HBM3, sm_90, ...)"; 0 when unknown
// (any CPU, or a GPU not in this table). The figures are the SXM parts' data-sheet
// numbers without sparsity; a PCIe part is slower (an H100 PCIe peaks at 756 TFLOP/s), so
// set runtime.peak_tflops for one.
inline double PeakBf16Flops(const std::string& device_description) {
  if (device_description.rfind("cuda", 0) != 0) return 0.0;  // not a CUDA backend
  if (device_description.find("H100") != std::string::npos) return 989e12;
  if (device_description.find("H200") != std::string::npos) return 989e12;
  if (device_description.find("A100") != std::string::npos) return 312e12;
  return 0.0;
}

// flops_per_token · tokens_per_s / peak_flops as a fraction (0.45 = 45%); negative when
// the peak is unknown (peak_flops <= 0): callers then omit MFU rather than print 0.
inline double Mfu(double flops_per_token, double tokens_per_s, double peak_flops) {
  if (!(peak_flops > 0)) return -1.0;
  return flops_per_token * tokens_per_s / peak_flops;
}

}  // namespace colossus
