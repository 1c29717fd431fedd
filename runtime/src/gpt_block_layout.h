// One transformer block's parameters and saved activations, shared by the GPT (model.cc)
// and its tensor-parallel shard (parallel/tp_model.cc) so that the two agree on the
// layout model.h documents: parameter i of a block is kBlockParamNames[i] in that order.
#pragma once

#include <cstddef>

namespace colossus::gpt_layout {

// Indices of one block's parameters within the per-layer group, in layout order.
enum BlockParam {
  kLn1W, kLn1B, kQkvW, kQkvB, kProjW, kProjB, kLn2W, kLn2B,
  kFcW, kFcB, kFcProjW, kFcProjB, kNumBlockParams
};
inline constexpr const char* kBlockParamNames[kNumBlockParams] = {
    "ln_1.weight",    "ln_1.bias",     "attn.qkv.weight", "attn.qkv.bias",
    "attn.proj.weight", "attn.proj.bias", "ln_2.weight",   "ln_2.bias",
    "mlp.fc.weight",  "mlp.fc.bias",   "mlp.proj.weight", "mlp.proj.bias"};

// One block's saved activations: offsets into the activation plan (planned for
// max_batch x max_seq).
struct BlockActs {
  size_t ln1, ln1_mean, ln1_rstd, qkv, atty, att_lse, attproj, res2;
  size_t ln2, ln2_mean, ln2_rstd, fch, fch_gelu, fcproj, res3;
};

}  // namespace colossus::gpt_layout
