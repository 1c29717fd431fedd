// AdamW (torch.optim.AdamW's update), fused over all parameters: one elementwise map
// (elementwise.cuh for the geometry) over the whole flat parameter buffer, with weight
// decay per tensor through one byte per 16-element granule (AdamWParams::decay_mask).
// It reads the f32 master weight, the gradient (any float dtype), the two f32 moments,
// writes the three f32 values back and, when asked, the compute copy of the weight
// (bf16 on CUDA) in the same pass. Per element that is 16 bytes in (with an f32
// gradient) and 12 + 2 out, plus 1/16 of a mask byte: bandwidth-bound, so the
// arithmetic is written exactly as the CPU reference writes it (divisions and sqrtf,
// IEEE-rounded) at no cost in time.
#include <cmath>
#include <type_traits>

#include "colossus/check.h"
#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {
namespace {

struct NoCopy {};  // param_copy absent

struct AdamWConstants {
  float beta1, beta2, lr, eps, weight_decay, grad_scale, clip_norm;
  float bias_correction1, bias_correction2;
};

template <typename G, typename P>
struct AdamWOp {
  float* param;
  const G* grad;
  float* m;
  float* v;
  P* copy;
  const uint8_t* mask;     // AdamWParams::decay_mask, or null
  int64_t origin;          // AdamWParams::mask_origin
  const float* scalars;    // AdamWParams::step_scalars, or null
  const float* sumsq;      // AdamWParams::grad_sumsq, or null
  AdamWConstants k;
  template <int N>
  __device__ __forceinline__ void Apply(int64_t i) const {
    // Per-step values from memory (a replayed CUDA graph) or from the launch. The same
    // arithmetic as the host's StepStatsFor: sqrtf and the division are IEEE-rounded.
    const float lr = scalars != nullptr ? scalars[0] : k.lr;
    const float bias_correction1 = scalars != nullptr ? scalars[1] : k.bias_correction1;
    const float bias_correction2 = scalars != nullptr ? scalars[2] : k.bias_correction2;
    const float grad_scale =
        sumsq != nullptr ? k.grad_scale * fminf(1.0f, k.clip_norm / (sqrtf(*sumsq) + 1e-6f))
                         : k.grad_scale;
    float w[N], g[N], mi[N], vi[N];
    LoadVec<N>(param + i, w);
    LoadVec<N>(grad + i, g);
    LoadVec<N>(m + i, mi);
    LoadVec<N>(v + i, vi);
#pragma unroll
    for (int e = 0; e < N; ++e) {
      const float gs = g[e] * grad_scale;
      mi[e] = k.beta1 * mi[e] + (1.0f - k.beta1) * gs;
      vi[e] = k.beta2 * vi[e] + (1.0f - k.beta2) * gs * gs;
      const float mhat = mi[e] / bias_correction1;
      const float vhat = vi[e] / bias_correction2;
      // Per element, not per vector: a vector may start mid-granule when the call's
      // origin is not a multiple of the vector width (a ZeRO shard's range). The byte
      // is one L1 hit for 16 elements.
      const float wd =
          mask == nullptr || mask[(origin + i + e) / kAdamWDecayGranule] != 0 ? k.weight_decay
                                                                              : 0.0f;
      // Decoupled weight decay on the parameter before this update.
      w[e] -= lr * (mhat / (sqrtf(vhat) + k.eps) + wd * w[e]);
    }
    StoreVec<N>(param + i, w);
    StoreVec<N>(m + i, mi);
    StoreVec<N>(v + i, vi);
    if constexpr (!std::is_same_v<P, NoCopy>) StoreVec<N>(copy + i, w);
  }
};

}  // namespace

void AdamW(const LaunchContext& ctx, float* param, View grad, float* m, float* v,
           View param_copy, int64_t n, const AdamWParams& p) {
  CHECK(p.step >= 1) << "AdamW: step is 1-based, got " << p.step;
  AdamWConstants k;
  k.beta1 = p.beta1;
  k.beta2 = p.beta2;
  k.lr = p.lr;
  k.eps = p.eps;
  k.weight_decay = p.weight_decay;
  k.grad_scale = p.grad_scale;
  const uint8_t* mask = p.decay_mask;
  const int64_t origin = p.mask_origin;
  k.clip_norm = p.clip_norm;
  CHECK(p.grad_sumsq == nullptr || p.clip_norm > 0)
      << "AdamW: grad_sumsq given without a clip_norm";
  k.bias_correction1 = AdamWBiasCorrection(p.beta1, p.step);
  k.bias_correction2 = AdamWBiasCorrection(p.beta2, p.step);
  const float* scalars = p.step_scalars;
  const float* sumsq = p.grad_sumsq;
  const bool aligned = Aligned16(param) && Aligned16(grad.data) && Aligned16(m) &&
                       Aligned16(v) && Aligned16(param_copy.data);
  DispatchFloat(
      grad.dtype, "AdamW",
      [&](auto gtag) {
        using G = decltype(gtag);
        const G* g = grad.as<const G>();
        if (param_copy.empty()) {
          LaunchMap(ctx,
                    AdamWOp<G, NoCopy>{param, g, m, v, nullptr, mask, origin, scalars, sumsq, k},
                    n, aligned);
          return;
        }
        DispatchFloat(
            param_copy.dtype, "AdamW",
            [&](auto ptag) {
              using P = decltype(ptag);
              LaunchMap(ctx, AdamWOp<G, P>{param, g, m, v, param_copy.as<P>(), mask, origin,
                                          scalars, sumsq, k},
                        n, aligned);
            },
            /*allow_f16=*/true);
      },
      /*allow_f16=*/true);
}

}  // namespace colossus::kernels::cuda
