// The Linear layer on CUDA: GEMMs through cuBLASLt, the bias gradient through our own
// deterministic column sums (ops.h: BiasGradient).
//
// Precision: bf16 inputs with fp32 accumulation (CUBLAS_COMPUTE_32F) and bf16 outputs,
// except dweight, which cuBLASLt writes as f32 with beta = 1 straight into the f32
// parameter gradient. The f32 path uses CUBLAS_COMPUTE_32F too (never TF32), so it
// agrees with the CPU's fp32 BLAS to ~1e-6.
//
// Row-major to cuBLASLt's column-major: a row-major [R, K] matrix is the column-major
// [K, R] matrix in the same memory (its transpose), so each row-major product is
// computed transposed. The three GEMMs of a Linear, column-major, (rows x cols):
//   forward   out^T (OC x N)  = W^T (OC x C) @ inp^T (C x N)     A = W (T), B = inp (N)
//             + bias[OC] down the rows: cuBLASLt's BIAS epilogue (bias has D's rows)
//   dinp      dinp^T (C x N)  = W^T^T (C x OC) @ dout^T (OC x N)  A = W (N), B = dout (N)
//   dweight   dW^T (C x OC)  += inp^T (C x N) @ dout (N x OC)     A = inp (N), B = dout (T)
// where "W (T)" means the column-major [C, OC] matrix W's memory is, used transposed.
//
// Plans (the matmul descriptor, the three layouts and the algorithm that
// cublasLtMatmulAlgoGetHeuristic picked) are cached per shape, dtype, epilogue and
// pointer alignment; the first call of a shape pays for the heuristic, later calls only
// set the bias/aux pointers and launch.
//
// Thread safety: one thread at a time (the backend's rule).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/statusor.h"
#include "colossus/kernels/dtype.h"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {

class CublasLt {
 public:
  // Creates the handle and a workspace of kWorkspaceBytes on the current device.
  static absl::StatusOr<std::unique_ptr<CublasLt>> Create();
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;

  // out [N,OC] (=) = inp [N,C] @ weight [OC,C]^T + bias [OC] (bias may be nullptr).
  // With pre_gelu != nullptr: pre_gelu (=) gets that sum and out (=) gelu of it, via
  // cuBLASLt's GELU_AUX epilogue; returns false (having written nothing) when cuBLASLt
  // offers no algorithm for the epilogue at this shape, so the caller can fall back.
  bool Forward(const LaunchContext& ctx, DType act, void* out, const void* inp,
               const void* weight, const void* bias, void* pre_gelu, int64_t N, int C, int OC);
  // dinp [N,C] (=) = dout [N,OC] @ weight [OC,C].
  void BackwardInput(const LaunchContext& ctx, DType act, void* dinp, const void* dout,
                     const void* weight, int64_t N, int C, int OC);
  // dweight [OC,C] (f32, +=) = dout [N,OC]^T @ inp [N,C].
  void BackwardWeight(const LaunchContext& ctx, DType act, float* dweight, const void* dout,
                      const void* inp, int64_t N, int C, int OC);

  size_t cached_plans() const { return plans_.size(); }
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // NVIDIA's advice for Hopper

 private:
  struct Gemm;
  struct Plan;
  // (transa, transb, m, n, k, lda, ldb, ldd, A/B type, D type, epilogue, beta != 0,
  //  alignment of A, B, D, bias, aux)
  using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int,
                         int, int, bool, int, int, int, int, int>;

  CublasLt(cublasLtHandle_t handle, void* workspace);  // out of line: Plan is incomplete here
  // Runs g; false (nothing launched) when no algorithm exists and may_fail, otherwise
  // that aborts naming the GEMM.
  bool Run(const LaunchContext& ctx, const Gemm& g, bool may_fail);
  Plan* FindPlan(const Gemm& g);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace colossus::kernels::cuda
