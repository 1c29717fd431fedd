// AdamW, torch.optim.AdamW's update written out elementwise.
#include <algorithm>
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
  F bc1 = static_cast<F>(1.0 - std::pow(static_cast<double>(p.beta1), p.step));
  F bc2 = static_cast<F>(1.0 - std::pow(static_cast<double>(p.beta2), p.step));
  F lr = p.lr;
  // The per-step values from memory (AdamWParams::step_scalars, grad_sumsq): what a
  // CUDA graph's kernel reads; here the same arithmetic on the host.
  if (p.step_scalars != nullptr) {
    lr = p.step_scalars[0];
    bc1 = p.step_scalars[1];
    bc2 = p.step_scalars[2];
  }
  F scale = p.grad_scale;
  if (p.grad_sumsq != nullptr) {
    CHECK(p.clip_norm > 0) << "AdamW: grad_sumsq given without a clip_norm";
    const float norm = std::sqrt(*p.grad_sumsq);
    scale = static_cast<F>(p.grad_scale * std::min(1.0f, p.clip_norm / (norm + 1e-6f)));
  }
  const F b1 = p.beta1, b2 = p.beta2, eps = p.eps, decay = p.weight_decay;
  // The update of [lo, hi) with one weight decay: a loop the compiler vectorizes.
  auto update = [&](int64_t lo, int64_t hi, F wd) {
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) {
      const F g = static_cast<F>(Widen(grad[i])) * scale;
      const F mi = b1 * m[i] + (F(1) - b1) * g;
      const F vi = b2 * v[i] + (F(1) - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      const F mhat = mi / bc1;
      const F vhat = vi / bc2;
      // Decoupled weight decay on the parameter before this update. Where the mask says
      // no decay, wd is 0 and the term is 0 * param, not skipped: the same arithmetic as
      // a call with weight_decay 0, so a masked call equals one call per tensor.
      param[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * param[i]);
    }
  };
  const uint8_t* mask = p.decay_mask;
  const int64_t origin = p.mask_origin, granule = kAdamWDecayGranule;
  // Each thread takes a contiguous range and walks it in runs of granules with the same
  // mask byte (a tensor, or several of the same kind), so the inner loop is a plain
  // vector loop rather than a mask lookup per element.
#pragma omp parallel if (n >= kMinParallelWork)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    if (mask == nullptr) {
      update(lo, hi, decay);
    } else {
      for (int64_t i = lo; i < hi;) {
        const uint8_t byte = mask[(origin + i) / granule];
        int64_t j = std::min(hi, ((origin + i) / granule + 1) * granule - origin);
        while (j < hi && mask[(origin + j) / granule] == byte) j = std::min(hi, j + granule);
        update(i, j, byte != 0 ? decay : F(0));
        i = j;
      }
    }
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
