// The Linear layer's bias gradient, dbias[j] += sum over rows of dout[:, j] (the GEMMs
// are in matmul.cu).
//
// The deterministic column reduction of column_reduce.cuh: grid (column slabs of
// 32 * kVec, row chunks), 8 warps per block each summing its rows in registers, then
// one thread per column adding the chunks' partials in order. Not cuBLASLt's BGRADB
// epilogue: that one overwrites its output, and parameter gradients accumulate.
#include <cstdint>

#include "cuda/check.h"
#include "cuda/column_reduce.cuh"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {
namespace {

template <typename T, int kVec>
struct BiasContribution {
  const T* dout;
  int OC;
  __device__ __forceinline__ void operator()(int64_t row, int c, float (&v)[1][kVec]) const {
    LoadVec<kVec>(dout + row * OC + c, v[0]);
  }
};

}  // namespace

void BiasGradient(const LaunchContext& ctx, DType act, float* dbias, const void* dout,
                  int64_t N, int OC) {
  if (N == 0 || OC == 0) return;
  DispatchFloat(act, "MatmulBackward (dbias)", [&](auto tag) {
    using E = decltype(tag);
    constexpr int kVec = 16 / sizeof(E);
    const E* d = static_cast<const E*>(dout);
    float* const outs[1] = {dbias};
    if (OC % kVec == 0 && Aligned16(dout)) {
      LaunchColumnSums<kVec, 1>(ctx, outs, BiasContribution<E, kVec>{d, OC}, N, OC);
    } else {
      LaunchColumnSums<1, 1>(ctx, outs, BiasContribution<E, 1>{d, OC}, N, OC);
    }
  });
}

}  // namespace colossus::kernels::cuda
