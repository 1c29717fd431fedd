// Sampling text from a model: autoregressive decoding with temperature.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "colossus/model.h"

namespace colossus {

// Extends `prompt` (token ids, at least one) by `n` tokens drawn from
// softmax(logits / temperature), deterministically for a given seed. The context fed to
// the model is the last model.max_seq() tokens. Uses batch row 0 of the model's
// activations (clobbering the last Forward). Returns only the new tokens.
absl::StatusOr<std::vector<int>> Generate(GPT& model, const std::vector<int>& prompt, int n,
                                          float temperature, uint64_t seed);

}  // namespace colossus
