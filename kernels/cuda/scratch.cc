// DeviceScratch (ops.h): the backend's one growable device buffer for partial sums.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "cuda/check.h"
#include "cuda/ops.h"

namespace colossus::kernels::cuda {

DeviceScratch::~DeviceScratch() {
  if (data_ != nullptr) cudaFree(data_);
}

void* DeviceScratch::Get(size_t bytes, cudaStream_t stream) {
  if (bytes <= bytes_ && data_ != nullptr) return data_;
  // Work already enqueued may still read the old buffer: wait for it before freeing.
  COLOSSUS_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (data_ != nullptr) COLOSSUS_CUDA_CHECK(cudaFree(data_));
  data_ = nullptr;
  bytes_ = 0;
  // Round up to 1 MiB steps so a sequence of slightly larger shapes does not reallocate
  // every time.
  const size_t rounded = (std::max<size_t>(bytes, 1) + (size_t{1} << 20) - 1) >> 20 << 20;
  COLOSSUS_CUDA_CHECK(cudaMalloc(&data_, rounded));
  bytes_ = rounded;
  return data_;
}

}  // namespace colossus::kernels::cuda
