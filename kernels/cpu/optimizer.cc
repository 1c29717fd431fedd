// AdamW, torch.optim.AdamW's update written out elementwise.
#include <cmath>
#include <cstdint>

#include "colossus/check.h"
#include "cpu/convert.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace colossus::kernels::cpu {

template <typename F, typename G>
void AdamW(F* param, const G* grad, F* m, F* v, int64_t n, const AdamWParams& p) {
  CHECK(p.step >= 1) << "AdamW: step is 1-based, got " << p.step;
  // Bias corrections in double, as PyTorch computes them (Python floats), then
  // rounded once to the compute type.
  const F bc1 = static_cast<F>(1.0 - std::pow(static_cast<double>(p.beta1), p.step));
  const F bc2 = static_cast<F>(1.0 - std::pow(static_cast<double>(p.beta2), p.step));
  const F b1 = p.beta1, b2 = p.beta2, lr = p.lr, eps = p.eps, decay = p.weight_decay;
  const F scale = p.grad_scale;
  const uint8_t* mask = p.decay_mask;
  const int64_t origin = p.mask_origin;
#pragma omp parallel for simd schedule(static) if (n >= kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    // 0 * param, not a skipped term, where the mask says no decay: the same arithmetic
    // as a call with weight_decay 0, so a masked call equals one call per tensor.
    const F wd = mask == nullptr || mask[(origin + i) / kAdamWDecayGranule] != 0 ? decay : F(0);
    const F g = static_cast<F>(Widen(grad[i])) * scale;
    const F mi = b1 * m[i] + (F(1) - b1) * g;
    const F vi = b2 * v[i] + (F(1) - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const F mhat = mi / bc1;
    const F vhat = vi / bc2;
    // Decoupled weight decay on the parameter before this update.
    param[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * param[i]);
  }
}

template void AdamW<float, float>(float*, const float*, float*, float*, int64_t,
                                  const AdamWParams&);
template void AdamW<float, Bf16>(float*, const Bf16*, float*, float*, int64_t,
                                 const AdamWParams&);
template void AdamW<float, Half>(float*, const Half*, float*, float*, int64_t,
                                 const AdamWParams&);
template void AdamW<float, double>(float*, const double*, float*, float*, int64_t,
                                   const AdamWParams&);
template void AdamW<double, double>(double*, const double*, double*, double*, int64_t,
                                    const AdamWParams&);

}  // namespace colossus::kernels::cpu
