// Linear layer: out = inp @ weight^T + bias, through BLAS.
#include <omp.h>

#include <cstdint>

#include "cpu/blas.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace colossus::kernels::cpu {

template <typename F>
void MatmulForward(F* out, const F* inp, const F* weight, const F* bias, int64_t N, int C,
                   int OC) {
  // Seeding out with the bias lets the GEMM add it for free (beta = 1) instead of a
  // second pass over out afterwards.
  if (bias != nullptr) {
#pragma omp parallel for schedule(static) if (N * OC >= kMinParallelWork)
    for (int64_t i = 0; i < N; ++i) {
      F* o = out + i * OC;
#pragma omp simd
      for (int j = 0; j < OC; ++j) o[j] = bias[j];
    }
  }
  // [N,C] @ [OC,C]^T -> [N,OC]
  Gemm<F>(false, true, N, OC, C, F(1), inp, C, weight, C, bias != nullptr ? F(1) : F(0), out,
          OC);
}

template <typename F>
void MatmulBackward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp,
                    const F* weight, int64_t N, int C, int OC) {
  // dinp = dout @ weight: [N,OC] @ [OC,C] -> [N,C], overwriting.
  Gemm<F>(false, false, N, C, OC, F(1), dout, OC, weight, C, F(0), dinp, C);
  // dweight += dout^T @ inp: [OC,N] @ [N,C] -> [OC,C], accumulating (beta = 1).
  Gemm<F>(true, false, OC, C, N, F(1), dout, OC, inp, C, F(1), dweight, C);
  if (dbias == nullptr) return;
  // dbias += column sums of dout. Threads own slices of columns (see ColumnsOfThread)
  // and sum them from zero over all rows in order.
#pragma omp parallel if (N * OC >= kMinParallelWork)
  {
    const ColumnRange cols = ColumnsOfThread(OC, omp_get_thread_num(), omp_get_num_threads());
    const int64_t width = cols.end - cols.begin;
    if (width > 0) {
      F* acc = ThreadScratch<F, 0>(width);
      for (int64_t c = 0; c < width; ++c) acc[c] = 0;
      for (int64_t i = 0; i < N; ++i) {
        const F* d = dout + i * OC + cols.begin;
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) acc[c] += d[c];
      }
      for (int64_t c = 0; c < width; ++c) dbias[cols.begin + c] += acc[c];
    }
  }
}

#define COLOSSUS_INSTANTIATE(F)                                                          \
  template void MatmulForward<F>(F*, const F*, const F*, const F*, int64_t, int, int);    \
  template void MatmulBackward<F>(F*, F*, F*, const F*, const F*, const F*, int64_t, int, \
                                  int);
COLOSSUS_INSTANTIATE(float)
COLOSSUS_INSTANTIATE(double)
#undef COLOSSUS_INSTANTIATE

}  // namespace colossus::kernels::cpu
