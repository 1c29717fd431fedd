// One GEMM entry point for both instantiations of the CPU ops: float goes to
// cblas_sgemm, double to cblas_dgemm, always row-major.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "colossus/check.h"

namespace colossus::kernels::cpu {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T. Leading dimensions are
// row strides in elements. With beta == 0 the old contents of C are never read
// (OpenBLAS writes zeros first), so C may hold garbage, NaN included.
// Called inside an OpenMP parallel region it runs on the calling thread only; outside
// one it uses omp_get_max_threads() threads (the OpenMP build of OpenBLAS).
template <typename F>
void Gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, F alpha, const F* A,
          int64_t lda, const F* B, int64_t ldb, F beta, F* C, int64_t ldc) {
  static_assert(std::is_same_v<F, float> || std::is_same_v<F, double>);
  CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
        ldc <= INT_MAX)
      << "Gemm: a dimension exceeds BLAS's int: M=" << M << " N=" << N << " K=" << K;
  if (M == 0 || N == 0) return;
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  // BLAS rejects leading dimensions below 1 even where K == 0 leaves them unused.
  const int ilda = std::max<int>(1, static_cast<int>(lda));
  const int ildb = std::max<int>(1, static_cast<int>(ldb));
  const int ildc = std::max<int>(1, static_cast<int>(ldc));
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  if constexpr (std::is_same_v<F, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, ilda, B, ildb, beta, C, ildc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, ilda, B, ildb, beta, C, ildc);
  }
}

}  // namespace colossus::kernels::cpu
