// CudaBackend: kernels::Backend on one GPU. The ops (View checks, kernels) are
// CudaOpsBackend's (cuda_ops_backend.h), shared with the emulated backend the tests run
// without a GPU; this file adds what only a GPU has: device memory and copies, the
// stream, graph capture, and the GEMMs through cuBLASLt (matmul.h).
#include "colossus/kernels/cuda_backend.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/check.h"
#include "common/arg_checks.h"
#include "cuda/check.h"
#include "cuda/cuda_graph.h"
#include "cuda/cuda_ops_backend.h"
#include "cuda/matmul.h"
#include "cuda/ops.h"

namespace colossus::kernels {
namespace {

using internal::Overlap;

// ---- RAII ------------------------------------------------------------------------------

class Stream {
 public:
  Stream() = default;
  explicit Stream(cudaStream_t s) : s_(s) {}
  ~Stream() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// ---- the backend -----------------------------------------------------------------------------

class CudaBackend final : public cuda::CudaOpsBackend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(int device);
  ~CudaBackend() override {
    // Let enqueued work finish before its buffers (scratch, workspace) are freed.
    if (cudaSetDevice(device_) == cudaSuccess) cudaStreamSynchronize(stream_.get());
  }

  std::string Describe() const override { return description_; }
  cudaStream_t stream() const { return stream_.get(); }

  // ---- memory -------------------------------------------------------------------------
  absl::StatusOr<void*> Allocate(size_t bytes) override {
    NotCapturing("Allocate");
    Enter();
    void* p = nullptr;
    // Zero bytes still get a unique, freeable pointer, as on the CPU.
    const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();  // out-of-memory is not sticky; clear it for the next launch
      return absl::ResourceExhaustedError(absl::StrCat(
          "cuda:", device_, ": cannot allocate ", bytes, " bytes: ", cudaGetErrorString(err)));
    }
    return p;  // cudaMalloc aligns to at least 256 bytes
  }
  void Free(void* ptr) override {
    if (ptr == nullptr) return;
    NotCapturing("Free");
    Enter();
    COLOSSUS_CUDA_CHECK(cudaFree(ptr));
  }
  void CopyToHost(void* host_dst, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    NotCapturing("CopyToHost");
    Enter();
    COLOSSUS_CUDA_CHECK(
        cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_.get()));
    COLOSSUS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }
  void CopyFromHost(void* dst, const void* host_src, size_t bytes) override {
    if (bytes == 0) return;
    NotCapturing("CopyFromHost");
    Enter();
    COLOSSUS_CUDA_CHECK(
        cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_.get()));
    // The caller may free or reuse host_src as soon as this returns.
    COLOSSUS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }
  void Copy(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0 || dst == src) return;
    Enter();
    if (Overlap(dst, src, bytes)) {
      // cudaMemcpy's result is undefined for overlapping ranges (the CPU's is memmove):
      // go through scratch.
      void* tmp = scratch().Get(bytes, stream_.get());
      COLOSSUS_CUDA_CHECK(
          cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
      src = tmp;
    }
    COLOSSUS_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
  }
  void Synchronize() override {
    NotCapturing("Synchronize");
    Enter();
    COLOSSUS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

  // ---- graphs ----------------------------------------------------------------------------
  absl::Status BeginCapture() override {
    if (capturing_) return absl::FailedPreconditionError("BeginCapture: a capture is in progress");
    if (absl::Status s = cuda::BeginStreamCapture(stream_.get(), device_); !s.ok()) return s;
    capturing_ = true;
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<OpGraph>> EndCapture() override {
    if (!capturing_) return absl::FailedPreconditionError("EndCapture: no capture in progress");
    capturing_ = false;
    return cuda::EndStreamCapture(stream_.get(), device_);
  }

  // ---- the GEMMs --------------------------------------------------------------------------
  bool GemmForward(DType act, void* out, const void* inp, const void* weight, const void* bias,
                   void* pre_gelu, int64_t N, int C, int OC) override {
    return lt_->Forward(ctx(), act, out, inp, weight, bias, pre_gelu, N, C, OC);
  }
  void GemmBackwardInput(DType act, void* dinp, const void* dout, const void* weight, int64_t N,
                         int C, int OC) override {
    lt_->BackwardInput(ctx(), act, dinp, dout, weight, N, C, OC);
  }
  void GemmBackwardWeight(DType act, float* dweight, const void* dout, const void* inp,
                          int64_t N, int C, int OC) override {
    lt_->BackwardWeight(ctx(), act, dweight, dout, inp, N, C, OC);
  }

 private:
  CudaBackend(int device, std::string description, Stream stream,
              std::unique_ptr<cuda::CublasLt> lt, int num_sms)
      : device_(device),
        description_(std::move(description)),
        stream_(std::move(stream)),
        lt_(std::move(lt)) {
    SetLaunchContext(stream_.get(), num_sms);
  }

  // Makes this backend's GPU current for the calling thread (cheap when it already is).
  void Enter() const override { COLOSSUS_CUDA_CHECK(cudaSetDevice(device_)); }
  // Memory calls and synchronizes cannot be part of a graph (backend.h, "Graphs"); CUDA
  // would fail them with an error less clear than this.
  void NotCapturing(const char* call) const {
    CHECK(!capturing_) << "cuda:" << device_ << ": " << call << " while capturing an op graph";
  }

  const int device_;
  const std::string description_;
  Stream stream_;
  // Destroyed before the stream (members die in reverse order): the plans and the
  // workspace may be in use by work on it until the device is synchronized.
  std::unique_ptr<cuda::CublasLt> lt_;
  bool capturing_ = false;

};

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(int device) {
  int count = 0;
  const cudaError_t count_error = cudaGetDeviceCount(&count);
  if (count_error != cudaSuccess) {
    cudaGetLastError();  // leave no error behind for the process's later CUDA calls
    // Whatever the code, no device count means no usable GPU here.
    return absl::UnavailableError(
        cuda::CudaErrorStatus(count_error, "cudaGetDeviceCount(&count)", __FILE__, __LINE__)
            .message());
  }
  if (count == 0) return absl::UnavailableError("cudaGetDeviceCount: no CUDA device");
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda:", device, " asked for, but this machine has ", count, " GPU(s)"));
  }
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaDeviceProp prop{};
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  int runtime_version = 0, driver_version = 0;
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&runtime_version));
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&driver_version));
  cudaStream_t raw_stream = nullptr;
  // Non-blocking: the legacy default stream (which other code in the process may use
  // implicitly) must not serialize with our ops.
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&raw_stream, cudaStreamNonBlocking));
  Stream stream(raw_stream);
  absl::StatusOr<std::unique_ptr<cuda::CublasLt>> lt = cuda::CublasLt::Create();
  if (!lt.ok()) return lt.status();
  std::string description = absl::StrFormat(
      "cuda:%d (%s, sm_%d%d, %d SMs, %.1f GiB, CUDA runtime %d.%d, driver %d.%d, cuBLASLt %d)",
      device, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
      static_cast<double>(prop.totalGlobalMem) / (1 << 30), runtime_version / 1000,
      runtime_version % 1000 / 10, driver_version / 1000, driver_version % 1000 / 10,
      static_cast<int>(cublasLtGetVersion()));
  return std::unique_ptr<CudaBackend>(new CudaBackend(
      device, std::move(description), std::move(stream), *std::move(lt),
      prop.multiProcessorCount));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int device) {
  absl::StatusOr<std::unique_ptr<CudaBackend>> backend = CudaBackend::Create(device);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<Backend>(*std::move(backend));
}

void* CudaStreamOf(const Backend& backend) {
  const auto* cuda_backend = dynamic_cast<const CudaBackend*>(&backend);
  CHECK(cuda_backend != nullptr) << "CudaStreamOf: the backend is " << backend.Describe()
                                 << ", not one made by MakeCudaBackend";
  return cuda_backend->stream();
}

}  // namespace colossus::kernels
