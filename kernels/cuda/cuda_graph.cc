// CUDA graphs from stream capture (cuda_graph.h).
#include "cuda/cuda_graph.h"

#include "cuda/check.h"

namespace colossus::kernels::cuda {
namespace {

class CudaGraph final : public OpGraph {
 public:
  CudaGraph(cudaGraph_t graph, cudaGraphExec_t exec, cudaStream_t stream, int device,
            int64_t nodes)
      : graph_(graph), exec_(exec), stream_(stream), device_(device), nodes_(nodes) {}
  ~CudaGraph() override {
    if (cudaSetDevice(device_) != cudaSuccess) return;
    // A replay may still be running: the executable graph must outlive it.
    cudaStreamSynchronize(stream_);
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  void Replay() override {
    COLOSSUS_CUDA_CHECK(cudaSetDevice(device_));
    COLOSSUS_CUDA_CHECK(cudaGraphLaunch(exec_, stream_));
  }
  int64_t size() const override { return nodes_; }

 private:
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
  int device_;
  int64_t nodes_;
};

}  // namespace

absl::Status BeginStreamCapture(cudaStream_t stream, int device) {
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OpGraph>> EndStreamCapture(cudaStream_t stream, int device) {
  COLOSSUS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (ended != cudaSuccess) {
    cudaGetLastError();  // an invalidated capture's error is not sticky: clear it
    if (graph != nullptr) cudaGraphDestroy(graph);
    return CudaErrorStatus(ended, "cudaStreamEndCapture(stream, &graph)", __FILE__, __LINE__);
  }
  size_t nodes = 0;
  cudaGraphExec_t exec = nullptr;
  cudaError_t err = cudaGraphGetNodes(graph, nullptr, &nodes);
  if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
  if (err != cudaSuccess) {
    cudaGraphDestroy(graph);
    return CudaErrorStatus(err, "cudaGraphInstantiate(&exec, graph, 0)", __FILE__, __LINE__);
  }
  return std::unique_ptr<OpGraph>(
      new CudaGraph(graph, exec, stream, device, static_cast<int64_t>(nodes)));
}

}  // namespace colossus::kernels::cuda
