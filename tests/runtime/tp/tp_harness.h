// Shared pieces of the tensor-parallel tests: a small model whose heads and padded
// vocabulary split 1, 2 and 4 ways (odd real vocabulary), deterministic batches, the
// one-rank reference run, and per-tensor comparisons.
//
// Everything here runs inside the forked rank processes (tests/comm/multiproc.h): the
// gtest parent never computes, so no OpenMP pool exists in it when it forks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "colossus/config.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"

namespace colossus::testing {

// L2 H4 C32 T16, V = 251 (odd; padded to 256).
GPTConfig SmallTpConfig();
OptimizerConfig SmallTpOptimizer();  // clipping and weight decay active

// Tokens and targets of optimizer step `step`: B x T each, a pure function of the
// arguments; a few targets are -1 (ignored positions).
void MakeBatch(int64_t step, int B, int T, int V, std::vector<int32_t>* tokens,
               std::vector<int32_t>* targets);

// Every tensor of a model copied to the host, by parameter index.
using HostTensors = std::vector<std::vector<float>>;
HostTensors CopyParams(const GPT& model);
HostTensors CopyGrads(const GPT& model);

struct ReferenceRun {
  std::vector<float> losses;   // per step
  std::vector<float> grad_norms;
  HostTensors first_grads;     // after step 0's backward
  HostTensors final_weights;
};
// One process, the plain GPT and AdamW: `steps` steps on the whole B x T batch from the
// weights GPT::InitWeights(seed) gives.
absl::Status RunReference(const GPTConfig& config, const OptimizerConfig& opt, int steps, int B,
                          int T, uint64_t seed, ReferenceRun* out);

// OK when every tensor of `got` is within `tol` of `want` in relative L2 norm (a tensor
// whose reference is zero must be zero up to `tol` absolutely); else an error naming
// the worst tensor and both norms. The attention key biases (the middle third of
// h.*.attn.qkv.bias) are skipped: their gradient is zero in exact arithmetic, so their
// values are floating-point noise that AdamW normalises into steps of any sign.
absl::Status CompareTensors(const GPT& names, const HostTensors& got, const HostTensors& want,
                            double tol, const std::string& what);

// OK when |got - want| <= tol * |want| for each element.
absl::Status CompareScalars(const std::vector<float>& got, const std::vector<float>& want,
                            double tol, const std::string& what);

}  // namespace colossus::testing
