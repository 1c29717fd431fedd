// OpTimer on CUDA events (op_timer_cuda.h).
#include "cuda/op_timer_cuda.h"

#include <cuda_runtime.h>

#include <vector>

#include "colossus/kernels/cuda_backend.h"
#include "cuda/check.h"

namespace colossus::kernels::cuda {
namespace {

class CudaEventTimer final : public OpTimer {
 public:
  explicit CudaEventTimer(const Backend& backend)
      : stream_(static_cast<cudaStream_t>(CudaStreamOf(backend))) {
    COLOSSUS_CUDA_CHECK(cudaStreamGetDevice(stream_, &device_));
  }
  ~CudaEventTimer() override {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  CudaEventTimer(const CudaEventTimer&) = delete;
  CudaEventTimer& operator=(const CudaEventTimer&) = delete;

  void Mark() override {
    // An event must be created and recorded on its stream's device; the thread's current
    // device may be another backend's.
    COLOSSUS_CUDA_CHECK(cudaSetDevice(device_));
    // Events are reused across recordings: creating one costs more than recording it,
    // and a step makes hundreds of marks.
    if (used_ == events_.size()) {
      cudaEvent_t e = nullptr;
      COLOSSUS_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    COLOSSUS_CUDA_CHECK(cudaEventRecord(events_[used_], stream_));
    ++used_;
  }

  std::vector<double> Resolve() override {
    std::vector<double> ms;
    if (used_ == 0) return ms;
    // Events on one stream complete in order: the last done means all are.
    COLOSSUS_CUDA_CHECK(cudaEventSynchronize(events_[used_ - 1]));
    ms.reserve(used_);
    for (size_t i = 0; i < used_; ++i) {
      float elapsed = 0;
      COLOSSUS_CUDA_CHECK(cudaEventElapsedTime(&elapsed, events_[0], events_[i]));
      ms.push_back(elapsed);
    }
    used_ = 0;
    return ms;
  }

 private:
  cudaStream_t stream_;
  int device_ = 0;
  std::vector<cudaEvent_t> events_;
  size_t used_ = 0;
};

}  // namespace

std::unique_ptr<OpTimer> MakeCudaEventTimer(const Backend& backend) {
  return std::make_unique<CudaEventTimer>(backend);
}

}  // namespace colossus::kernels::cuda
