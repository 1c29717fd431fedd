// The Linear layer's GEMMs: cuBLASLt with plan caching (matmul.h explains the layouts).
// The bias gradient is in matmul_bias.cu.
#include "cuda/matmul.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "cuda/check.h"
#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {

// ---- cuBLASLt ----------------------------------------------------------------------------
namespace {

cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF16: return CUDA_R_16F;
    default: break;
  }
  CHECK(false) << "matmul: dtype " << DTypeName(t) << " has no cuBLASLt type here";
  return CUDA_R_32F;
}

// The largest power of two <= 256 that divides the address (256 for nullptr): what
// cuBLASLt's MIN_ALIGNMENT preferences ask for. Its default assumes 256 for every
// pointer, which a View into a planned buffer need not satisfy.
int AlignmentOf(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return 256;
  int align = 1;
  while (align < 256 && (a % (2 * align)) == 0) align *= 2;
  return align;
}

struct DescDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* d) const { cublasLtMatmulDescDestroy(d); }
};
struct LayoutDeleter {
  void operator()(cublasLtMatrixLayoutOpaque_t* l) const { cublasLtMatrixLayoutDestroy(l); }
};
struct PreferenceDeleter {
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const {
    cublasLtMatmulPreferenceDestroy(p);
  }
};
using DescPtr = std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDeleter>;
using LayoutPtr = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LayoutDeleter>;
using PreferencePtr = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, PreferenceDeleter>;

LayoutPtr MakeLayout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t layout = nullptr;
  COLOSSUS_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld));
  return LayoutPtr(layout);
}

template <typename V>
void SetDesc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const V& value) {
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)));
}

}  // namespace

// One GEMM in cuBLASLt's column-major terms: D (m x n) = op(A) @ op(B) (+ beta D)
// (+ epilogue). Pointers are not part of the plan; their alignments are.
struct CublasLt::Gemm {
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* d = nullptr;
  int64_t ldd = 0;
  cudaDataType_t ab_type = CUDA_R_32F, d_type = CUDA_R_32F;
  bool accumulate = false;  // beta = 1 (D += ...) instead of 0
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;  // when the epilogue has BIAS; same type as D
  void* aux = nullptr;         // GELU_AUX: the pre-activation, D's type and shape
  int64_t aux_ld = 0;

  std::string Describe() const {
    return absl::StrCat("m=", m, " n=", n, " k=", k, " transa=", transa == CUBLAS_OP_T,
                        " transb=", transb == CUBLAS_OP_T, " lda=", lda, " ldb=", ldb,
                        " ldd=", ldd, " ab_type=", static_cast<int>(ab_type),
                        " d_type=", static_cast<int>(d_type), " epilogue=", epilogue,
                        " beta=", accumulate ? 1 : 0);
  }
};

struct CublasLt::Plan {
  DescPtr desc;
  LayoutPtr a_layout, b_layout, d_layout;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;
};

CublasLt::CublasLt(cublasLtHandle_t handle, void* workspace)
    : handle_(handle), workspace_(workspace) {}

absl::StatusOr<std::unique_ptr<CublasLt>> CublasLt::Create() {
  cublasLtHandle_t handle = nullptr;
  const cublasStatus_t status = cublasLtCreate(&handle);
  if (status != CUBLAS_STATUS_SUCCESS) {
    return absl::UnavailableError(absl::StrCat("cublasLtCreate: ", cublasLtGetStatusName(status),
                                               " (", cublasLtGetStatusString(status), ")"));
  }
  void* workspace = nullptr;
  const cudaError_t err = cudaMalloc(&workspace, kWorkspaceBytes);
  if (err != cudaSuccess) {
    cublasLtDestroy(handle);
    return CudaErrorStatus(err, "cudaMalloc(&workspace, kWorkspaceBytes)", __FILE__, __LINE__);
  }
  return std::unique_ptr<CublasLt>(new CublasLt(handle, workspace));
}

CublasLt::~CublasLt() {
  plans_.clear();  // descriptors before the handle
  // Errors are ignored here: a destructor cannot report them, and a dead device has
  // already been reported by the op that found it.
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

CublasLt::Plan* CublasLt::FindPlan(const Gemm& g) {
  // aux_ld is ldd whenever aux is set, and the compute type is always 32F: neither
  // needs a place in the key.
  const Key key{g.transa,         g.transb,         g.m,
                g.n,              g.k,              g.lda,
                g.ldb,            g.ldd,            g.ab_type,
                g.d_type,         static_cast<int>(g.epilogue), g.accumulate,
                AlignmentOf(g.a), AlignmentOf(g.b), AlignmentOf(g.d),
                AlignmentOf(g.bias), AlignmentOf(g.aux)};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();

  auto plan = std::make_unique<Plan>();
  cublasLtMatmulDesc_t desc = nullptr;
  // fp32 accumulation for every dtype; never TF32 (CUBLAS_COMPUTE_32F_FAST_TF32), which
  // would break the f32 path's 1e-5 agreement with the CPU.
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  plan->desc.reset(desc);
  SetDesc(desc, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<int32_t>(g.transa));
  SetDesc(desc, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<int32_t>(g.transb));
  SetDesc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<uint32_t>(g.epilogue));
  if (g.bias != nullptr) {
    SetDesc(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(g.d_type));
    SetDesc(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
  }
  if (g.aux != nullptr) {
    SetDesc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, static_cast<int32_t>(g.d_type));
    SetDesc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, g.aux_ld);
    SetDesc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.aux);
  }
  // Layouts describe the stored matrices, before op().
  const bool ta = g.transa == CUBLAS_OP_T, tb = g.transb == CUBLAS_OP_T;
  plan->a_layout = MakeLayout(g.ab_type, ta ? g.k : g.m, ta ? g.m : g.k, g.lda);
  plan->b_layout = MakeLayout(g.ab_type, tb ? g.n : g.k, tb ? g.k : g.n, g.ldb);
  plan->d_layout = MakeLayout(g.d_type, g.m, g.n, g.ldd);

  cublasLtMatmulPreference_t pref_raw = nullptr;
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_raw));
  PreferencePtr pref(pref_raw);
  const uint64_t workspace_bytes = kWorkspaceBytes;
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
      sizeof(workspace_bytes)));
  const uint32_t align_a = AlignmentOf(g.a), align_b = AlignmentOf(g.b),
                 align_d = AlignmentOf(g.d);
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
  // C is D (beta = 1 reads it in place).
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof(align_d)));
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d)));

  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      handle_, desc, plan->a_layout.get(), plan->b_layout.get(), plan->d_layout.get(),
      plan->d_layout.get(), pref.get(), 1, &result, &returned);
  // NOT_SUPPORTED and zero results both mean "no algorithm for this GEMM"; anything
  // else is a real failure.
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) COLOSSUS_CUBLAS_CHECK(status);
  if (status == CUBLAS_STATUS_SUCCESS && returned > 0) {
    plan->algo = result.algo;
    plan->has_algo = true;
  }
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

bool CublasLt::Run(const LaunchContext& ctx, const Gemm& g, bool may_fail) {
  Plan* plan = FindPlan(g);
  if (!plan->has_algo) {
    if (may_fail) return false;
    std::fprintf(stderr, "cuBLASLt has no algorithm for the GEMM %s\n", g.Describe().c_str());
    std::abort();
  }
  // The pointers change from call to call; the plan was chosen for their alignments.
  if (g.bias != nullptr) SetDesc(plan->desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
  if (g.aux != nullptr) {
    SetDesc(plan->desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.aux);
  }
  const float alpha = 1.0f;
  const float beta = g.accumulate ? 1.0f : 0.0f;
  COLOSSUS_CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc.get(), &alpha, g.a,
                                       plan->a_layout.get(), g.b, plan->b_layout.get(), &beta,
                                       g.d, plan->d_layout.get(), g.d, plan->d_layout.get(),
                                       &plan->algo, workspace_, kWorkspaceBytes, ctx.stream));
  return true;
}

bool CublasLt::Forward(const LaunchContext& ctx, DType act, void* out, const void* inp,
                       const void* weight, const void* bias, void* pre_gelu, int64_t N, int C,
                       int OC) {
  if (N == 0 || OC == 0) return true;
  CHECK(C > 0) << "MatmulForward: C = 0 (an empty reduction) is not supported on CUDA";
  Gemm g;
  g.transa = CUBLAS_OP_T;
  g.transb = CUBLAS_OP_N;
  g.m = OC;
  g.n = N;
  g.k = C;
  g.a = weight;
  g.lda = C;
  g.b = inp;
  g.ldb = C;
  g.d = out;
  g.ldd = OC;
  g.ab_type = g.d_type = CudaType(act);
  g.bias = bias;
  if (pre_gelu == nullptr) {
    g.epilogue = bias != nullptr ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    Run(ctx, g, /*may_fail=*/false);
    return true;
  }
  // The aux matrix's leading dimension must be a multiple of 8 (cublasLt.h).
  if (OC % 8 != 0) return false;
  g.epilogue = bias != nullptr ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
  g.aux = pre_gelu;
  g.aux_ld = OC;
  return Run(ctx, g, /*may_fail=*/true);
}

void CublasLt::BackwardInput(const LaunchContext& ctx, DType act, void* dinp, const void* dout,
                             const void* weight, int64_t N, int C, int OC) {
  if (N == 0 || C == 0) return;
  CHECK(OC > 0) << "MatmulBackward: OC = 0 (an empty reduction) is not supported on CUDA";
  Gemm g;
  g.transa = CUBLAS_OP_N;
  g.transb = CUBLAS_OP_N;
  g.m = C;
  g.n = N;
  g.k = OC;
  g.a = weight;
  g.lda = C;
  g.b = dout;
  g.ldb = OC;
  g.d = dinp;
  g.ldd = C;
  g.ab_type = g.d_type = CudaType(act);
  Run(ctx, g, /*may_fail=*/false);
}

void CublasLt::BackwardWeight(const LaunchContext& ctx, DType act, float* dweight,
                              const void* dout, const void* inp, int64_t N, int C, int OC) {
  if (N == 0 || C == 0 || OC == 0) return;  // adds nothing
  Gemm g;
  g.transa = CUBLAS_OP_N;
  g.transb = CUBLAS_OP_T;
  g.m = C;
  g.n = OC;
  g.k = N;
  g.a = inp;
  g.lda = C;
  g.b = dout;
  g.ldb = OC;
  g.d = dweight;
  g.ldd = C;
  g.ab_type = CudaType(act);
  g.d_type = CUDA_R_32F;  // parameter gradients are f32 whatever the activations
  g.accumulate = true;
  Run(ctx, g, /*may_fail=*/false);
}

}  // namespace colossus::kernels::cuda
