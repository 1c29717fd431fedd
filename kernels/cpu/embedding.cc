// Token + position embedding, forward and backward.
#include <omp.h>

#include <cstdint>

#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace colossus::kernels::cpu {

template <typename F>
void EmbeddingForward(F* out, const int32_t* tokens, const F* wte, const F* wpe, int B,
                      int T, int C) {
  const int64_t rows = static_cast<int64_t>(B) * T;
#pragma omp parallel for schedule(static) if (rows * C >= kMinParallelWork)
  for (int64_t bt = 0; bt < rows; ++bt) {
    const F* w = wte + static_cast<int64_t>(tokens[bt]) * C;
    const F* p = wpe + (bt % T) * C;
    F* o = out + bt * C;
#pragma omp simd
    for (int c = 0; c < C; ++c) o[c] = w[c] + p[c];
  }
}

template <typename F>
void EmbeddingBackward(F* dwte, F* dwpe, const F* dout, const int32_t* tokens, int B, int T,
                       int C) {
  const int64_t rows = static_cast<int64_t>(B) * T;
  // Tokens repeat, so splitting rows across threads would race on dwte. Each thread
  // takes a slice of the channels instead and walks every row in order: no races, and
  // each element's sum has the same order whatever the thread count.
#pragma omp parallel if (rows * C >= kMinParallelWork)
  {
    const ColumnRange cols = ColumnsOfThread(C, omp_get_thread_num(), omp_get_num_threads());
    for (int64_t bt = 0; bt < rows && cols.begin < cols.end; ++bt) {
      const F* d = dout + bt * C;
      F* w = dwte + static_cast<int64_t>(tokens[bt]) * C;
      F* p = dwpe + (bt % T) * C;
#pragma omp simd
      for (int64_t c = cols.begin; c < cols.end; ++c) {
        w[c] += d[c];
        p[c] += d[c];
      }
    }
  }
}

#define COLOSSUS_INSTANTIATE(F)                                                          \
  template void EmbeddingForward<F>(F*, const int32_t*, const F*, const F*, int, int, int); \
  template void EmbeddingBackward<F>(F*, F*, const F*, const int32_t*, int, int, int);
COLOSSUS_INSTANTIATE(float)
COLOSSUS_INSTANTIATE(double)
#undef COLOSSUS_INSTANTIATE

}  // namespace colossus::kernels::cpu
