// One transformer block's parameters and saved activations, shared by the GPT (model.cc)
// and its tensor-parallel shard (parallel/tp_model.cc) so that the two agree on the
// layout model.h documents: parameter i of a block is kBlockParamNames[i] in that order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/memory_plan.h"

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

// Plans block `layer`'s saved activations in `plan` as "h.<layer>.<name>" for B x T
// tokens of width C, in the compute dtype `act` (statistics in f32). A tensor-parallel
// shard holds `heads` of the heads, attention width `attn` (3 * attn for q, k, v) and
// MLP width `mlp`; the whole model: heads = n_head, attn = C, mlp = 4C.
inline BlockActs PlanBlockActs(MemoryPlan& plan, int64_t layer, int64_t B, int64_t T, int64_t C,
                               int64_t heads, int64_t attn, int64_t mlp, kernels::DType act) {
  const kernels::DType F32 = kernels::DType::kF32;
  const std::string p = absl::StrCat("h.", layer, ".");
  BlockActs a;
  a.ln1 = plan.Add(p + "ln1", {B, T, C}, act);
  a.ln1_mean = plan.Add(p + "ln1_mean", {B, T}, F32);
  a.ln1_rstd = plan.Add(p + "ln1_rstd", {B, T}, F32);
  a.qkv = plan.Add(p + "qkv", {B, T, 3 * attn}, act);
  a.atty = plan.Add(p + "atty", {B, T, attn}, act);
  a.att_lse = plan.Add(p + "att_lse", {B, heads, T}, F32);
  a.attproj = plan.Add(p + "attproj", {B, T, C}, act);
  a.res2 = plan.Add(p + "res2", {B, T, C}, act);
  a.ln2 = plan.Add(p + "ln2", {B, T, C}, act);
  a.ln2_mean = plan.Add(p + "ln2_mean", {B, T}, F32);
  a.ln2_rstd = plan.Add(p + "ln2_rstd", {B, T}, F32);
  a.fch = plan.Add(p + "fch", {B, T, mlp}, act);
  a.fch_gelu = plan.Add(p + "fch_gelu", {B, T, mlp}, act);
  a.fcproj = plan.Add(p + "fcproj", {B, T, C}, act);
  a.res3 = plan.Add(p + "res3", {B, T, C}, act);
  return a;
}

// Checks a batch of B x T = n token ids (and targets, when given; a negative target is
// ignored) against the vocabulary [0, V): out-of-range ids would index past the
// embedding table, so they are refused here, where the row and position can be named.
// Returns how many targets count towards the loss (0 without targets).
inline absl::StatusOr<int64_t> CheckBatchIds(const int32_t* tokens, const int32_t* targets,
                                             int64_t n, int64_t T, int64_t V) {
  int64_t counted = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "input token %d at batch row %d, position %d is outside the vocabulary [0, %d)",
          tokens[i], i / T, i % T, V));
    }
    if (targets != nullptr) {
      if (targets[i] >= V) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "target %d at batch row %d, position %d is outside the vocabulary [0, %d)",
            targets[i], i / T, i % T, V));
      }
      counted += targets[i] >= 0;
    }
  }
  return counted;
}

}  // namespace colossus::gpt_layout
