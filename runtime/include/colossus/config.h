// Model configuration: the GPT-2 architecture family and its presets.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace colossus {

// GPT-2 architecture: learned absolute positions, pre-LayerNorm blocks, causal
// multi-head attention, GELU-tanh MLP of width 4C, final LayerNorm, and an output
// projection tied to the token embedding.
struct GPTConfig {
  int n_layer = 12;
  int n_head = 12;
  int n_embd = 768;         // C; must be divisible by n_head
  int block_size = 1024;    // maximum sequence length (rows of the position table)
  int vocab_size = 50257;   // real vocabulary V
  int padded_vocab_size = 0;  // Vp; 0 means "round V up to a multiple of 128"

  // Vp: padded_vocab_size if set, else V rounded up to a multiple of 128 (rows of the
  // embedding past V are never a target and get no gradient from the loss).
  int PaddedVocab() const;
  // Number of parameters, counting the padded embedding rows.
  int64_t NumParameters() const;
  // Refuses impossible shapes with a message naming the field and its value.
  absl::Status Validate() const;
  std::string DebugString() const;  // "L12 H12 C768 T1024 V50257 (Vp 50304)"
};

// Named presets: "gpt2-124m", "gpt2-350m", "tiny" (L2 H2 C64 T64 V256, tests),
// "demo" (byte-level, trains in minutes on 2 cores), "bench" (the CPU benchmark's).
absl::StatusOr<GPTConfig> GPTPreset(const std::string& name);
std::vector<std::string> GPTPresetNames();

}  // namespace colossus
