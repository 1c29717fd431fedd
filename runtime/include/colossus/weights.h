// GPT weights as a safetensors file: every parameter under its model.h name, F32, in
// its model.h shape, plus the architecture as string metadata:
//   n_layer, n_head, n_embd, block_size, vocab_size, padded_vocab_size  (decimal)
//   format = "colossus-gpt"
// Copies go through the model's backend, so this works for CPU and CUDA models alike.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colossus/config.h"
#include "colossus/model.h"

namespace colossus {

// Writes every parameter of `model` to `path` atomically (see WriteSafetensors).
// Synchronous: blocks until the backend's pending work and the file are done.
absl::Status SaveWeights(const GPT& model, const std::string& path);

// Replaces every parameter (the f32 master weights) of `model` with the tensors of
// `path`, then refreshes the compute copies the ops read. The file must hold
// exactly the model's parameters (by name), each F32 in the model's shape, and, if it
// carries the config metadata, the same architecture. Everything is checked before
// anything is copied, so on error the model is unchanged. Errors name the file and the
// tensor or field: InvalidArgument for a file that does not fit this model, DataLoss /
// NotFound from opening it.
absl::Status LoadWeights(GPT* model, const std::string& path);

// The architecture stored in the metadata of a file written by SaveWeights, validated.
// InvalidArgument naming the file and the key when a key is missing or not an integer.
absl::StatusOr<GPTConfig> ReadWeightsConfig(const std::string& path);

}  // namespace colossus
