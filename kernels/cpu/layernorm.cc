// LayerNorm over the last dimension (eps 1e-5, biased variance, as PyTorch's).
#include <omp.h>

#include <cmath>
#include <cstdint>

#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace colossus::kernels::cpu {

template <typename F>
void LayerNormForward(F* out, F* mean, F* rstd, const F* inp, const F* weight,
                      const F* bias, int64_t N, int C) {
  const F eps = static_cast<F>(1e-5);
#pragma omp parallel for schedule(static) if (N * C >= kMinParallelWork)
  for (int64_t i = 0; i < N; ++i) {
    const F* x = inp + i * C;
    F sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < C; ++c) sum += x[c];
    const F m = sum / C;
    // Two passes (mean, then squared deviations) rather than E[x^2] - m^2, which
    // cancels catastrophically when |mean| >> std.
    F sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int c = 0; c < C; ++c) sq += (x[c] - m) * (x[c] - m);
    const F s = F(1) / std::sqrt(sq / C + eps);
    F* o = out + i * C;
#pragma omp simd
    for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[i] = m;
    rstd[i] = s;
  }
}

template <typename F>
void LayerNormBackward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp,
                       const F* weight, const F* mean, const F* rstd, int64_t N, int C) {
#pragma omp parallel if (N * C >= kMinParallelWork)
  {
    // Rows: dinp needs two reductions along its own row, so rows split across threads.
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < N; ++i) {
      const F* x = inp + i * C;
      const F* d = dout + i * C;
      const F m = mean[i], s = rstd[i];
      F dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
      for (int c = 0; c < C; ++c) {
        const F dnorm = weight[c] * d[c];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (x[c] - m) * s;
      }
      dnorm_mean /= C;
      dnorm_norm_mean /= C;
      F* dx = dinp + i * C;
#pragma omp simd
      for (int c = 0; c < C; ++c) {
        const F norm = (x[c] - m) * s;
        dx[c] += (weight[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
      }
    }
    // Columns: dweight and dbias sum over all rows, so here each thread owns a slice of
    // channels and sums it over every row in order (no races, thread-count independent
    // bits). It reads only inputs, hence `nowait` above. Partial sums start from zero so
    // that small per-step contributions are not lost against a large accumulated value.
    const ColumnRange cols = ColumnsOfThread(C, omp_get_thread_num(), omp_get_num_threads());
    const int64_t width = cols.end - cols.begin;
    if (width > 0) {
      F* acc_w = ThreadScratch<F, 0>(2 * width);
      F* acc_b = acc_w + width;
      for (int64_t c = 0; c < 2 * width; ++c) acc_w[c] = 0;
      for (int64_t i = 0; i < N; ++i) {
        const F* x = inp + i * C + cols.begin;
        const F* d = dout + i * C + cols.begin;
        const F m = mean[i], s = rstd[i];
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) {
          acc_w[c] += d[c] * ((x[c] - m) * s);
          acc_b[c] += d[c];
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        dweight[cols.begin + c] += acc_w[c];
        dbias[cols.begin + c] += acc_b[c];
      }
    }
  }
}

#define COLOSSUS_INSTANTIATE(F)                                                        \
  template void LayerNormForward<F>(F*, F*, F*, const F*, const F*, const F*, int64_t,  \
                                    int);                                              \
  template void LayerNormBackward<F>(F*, F*, F*, const F*, const F*, const F*, const F*, \
                                     const F*, int64_t, int);
COLOSSUS_INSTANTIATE(float)
COLOSSUS_INSTANTIATE(double)
#undef COLOSSUS_INSTANTIATE

}  // namespace colossus::kernels::cpu
