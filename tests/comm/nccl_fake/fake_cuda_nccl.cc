// A host-memory stand-in for the CUDA runtime calls and the NCCL calls that the NCCL
// backend and its tests make, so that the backend's own logic (Store rendezvous, the
// non-blocking init deadline, Work polling, the watchdog, Split, Abort) runs on machines
// without a GPU. Linked instead of cudart and libnccl into colossus_comm_nccl_fake_test.
//
// What it models: one device; "device memory" is host memory; each stream is a worker
// thread running its queue in order (the legacy default stream is one more), so a host
// function that sleeps holds back everything behind it as on a GPU; events complete when
// the stream reaches them. NCCL: single-rank communicators only, whose collectives are
// copies (with one rank, every collective is one); a communicator of more ranks never
// finishes initialising (no peer will come), which is how the init deadline is tested.
// It checks none of NCCL's numerics: that is the GPU test's job.
#include <cuda_runtime.h>
#include <nccl.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace {

class FakeStream {
 public:
  FakeStream() : worker_([this] { Loop(); }) {}
  ~FakeStream() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  void Push(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }
  void Drain() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and drained
      std::function<void()> fn = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      fn();
      lock.lock();
      busy_ = false;
      if (queue_.empty()) idle_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::function<void()>> queue_;
  bool busy_ = false;
  bool stop_ = false;
  std::thread worker_;
};

struct FakeEvent {
  std::mutex mu;
  unsigned recorded = 0;
  unsigned reached = 0;
  bool destroyed = false;  // destroyed while pending: the stream deletes it
};

std::mutex g_mu;
std::set<FakeStream*> g_streams;  // guarded by g_mu

FakeStream* LegacyStream() {
  static FakeStream* s = new FakeStream();  // leaked: outlives every static destructor
  return s;
}

FakeStream* Resolve(cudaStream_t s) {
  return s == nullptr ? LegacyStream() : reinterpret_cast<FakeStream*>(s);
}

void SyncAll() {
  std::vector<FakeStream*> all;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    all.assign(g_streams.begin(), g_streams.end());
  }
  all.push_back(LegacyStream());
  for (FakeStream* s : all) s->Drain();
}

size_t NcclSize(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
  }
}

}  // namespace

struct ncclComm {
  int rank = 0;
  int nranks = 1;
  bool ready = true;
  std::deque<std::pair<const void*, size_t>> sends;  // to self, awaiting the matching recv
};

extern "C" {

// ---- CUDA runtime ------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count) { *count = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) {
  auto* fs = new FakeStream();
  std::lock_guard<std::mutex> lock(g_mu);
  g_streams.insert(fs);
  *s = reinterpret_cast<cudaStream_t>(fs);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  auto* fs = reinterpret_cast<FakeStream*>(s);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_streams.erase(fs);
  }
  delete fs;  // runs what is queued first, like CUDA
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) { Resolve(s)->Drain(); return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { SyncAll(); return cudaSuccess; }
cudaError_t cudaMalloc(void** p, size_t n) {
  *p = std::malloc(n == 0 ? 1 : n);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) { SyncAll(); std::free(p); return cudaSuccess; }
cudaError_t cudaMemset(void* p, int v, size_t n) { SyncAll(); std::memset(p, v, n); return cudaSuccess; }
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, enum cudaMemcpyKind) {
  SyncAll();
  std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void* data) {
  Resolve(s)->Push([fn, data] { fn(data); });
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) {
  *e = reinterpret_cast<cudaEvent_t>(new FakeEvent());
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  auto* fe = reinterpret_cast<FakeEvent*>(e);
  unsigned gen;
  {
    std::lock_guard<std::mutex> lock(fe->mu);
    gen = ++fe->recorded;
  }
  Resolve(s)->Push([fe, gen] {
    bool free_it = false;
    {
      std::lock_guard<std::mutex> lock(fe->mu);
      if (fe->reached < gen) fe->reached = gen;
      free_it = fe->destroyed && fe->reached == fe->recorded;
    }
    if (free_it) delete fe;
  });
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  auto* fe = reinterpret_cast<FakeEvent*>(e);
  std::lock_guard<std::mutex> lock(fe->mu);
  return fe->reached == fe->recorded ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  // CUDA lets an event be destroyed before it completes: then the stream frees it.
  auto* fe = reinterpret_cast<FakeEvent*>(e);
  {
    std::lock_guard<std::mutex> lock(fe->mu);
    if (fe->reached != fe->recorded) {
      fe->destroyed = true;
      return cudaSuccess;
    }
  }
  delete fe;
  return cudaSuccess;
}
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorFake"; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "fake CUDA error"; }

// ---- NCCL --------------------------------------------------------------------------------
const char* ncclGetErrorString(ncclResult_t r) { return r == ncclSuccess ? "no error" : "fake NCCL error"; }
const char* ncclGetLastError(ncclComm_t) { return ""; }
ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  for (size_t i = 0; i < sizeof(id->internal); ++i) id->internal[i] = static_cast<char>(i * 7 + 1);
  return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId, int rank,
                                    ncclConfig_t* config) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  *comm = new ncclComm();
  (*comm)->rank = rank;
  (*comm)->nranks = nranks;
  (*comm)->ready = nranks == 1;  // no peer ever comes
  (void)config;  // non-blocking either way: an unready comm answers ncclInProgress
  return (*comm)->ready ? ncclSuccess : ncclInProgress;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* err) {
  *err = comm->ready ? ncclSuccess : ncclInProgress;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) { delete comm; return ncclSuccess; }
ncclResult_t ncclCommFinalize(ncclComm_t) { return ncclSuccess; }
ncclResult_t ncclCommDestroy(ncclComm_t comm) { delete comm; return ncclSuccess; }
ncclResult_t ncclCommSplit(ncclComm_t, int color, int, ncclComm_t* newcomm, ncclConfig_t*) {
  *newcomm = color == NCCL_SPLIT_NOCOLOR ? nullptr : new ncclComm();
  return ncclSuccess;
}
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) { *count = comm->nranks; return ncclSuccess; }
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) { *rank = comm->rank; return ncclSuccess; }
ncclResult_t ncclGroupStart() { return ncclSuccess; }
ncclResult_t ncclGroupEnd() { return ncclSuccess; }

static ncclResult_t Copy(const void* src, void* dst, size_t count, ncclDataType_t t,
                         ncclComm_t comm, cudaStream_t s) {
  if (comm == nullptr || comm->nranks != 1 || NcclSize(t) == 0) return ncclInvalidUsage;
  const size_t n = count * NcclSize(t);
  Resolve(s)->Push([src, dst, n] { std::memmove(dst, src, n); });
  return ncclSuccess;
}
ncclResult_t ncclAllReduce(const void* s, void* r, size_t c, ncclDataType_t t, ncclRedOp_t,
                           ncclComm_t comm, cudaStream_t st) { return Copy(s, r, c, t, comm, st); }
ncclResult_t ncclReduceScatter(const void* s, void* r, size_t c, ncclDataType_t t, ncclRedOp_t,
                               ncclComm_t comm, cudaStream_t st) { return Copy(s, r, c, t, comm, st); }
ncclResult_t ncclAllGather(const void* s, void* r, size_t c, ncclDataType_t t, ncclComm_t comm,
                           cudaStream_t st) { return Copy(s, r, c, t, comm, st); }
ncclResult_t ncclBroadcast(const void* s, void* r, size_t c, ncclDataType_t t, int root,
                           ncclComm_t comm, cudaStream_t st) {
  return root == 0 ? Copy(s, r, c, t, comm, st) : ncclInvalidArgument;
}
ncclResult_t ncclSend(const void* s, size_t c, ncclDataType_t t, int peer, ncclComm_t comm,
                      cudaStream_t) {
  if (peer != comm->rank) return ncclInvalidUsage;
  comm->sends.emplace_back(s, c * NcclSize(t));
  return ncclSuccess;
}
ncclResult_t ncclRecv(void* r, size_t c, ncclDataType_t t, int peer, ncclComm_t comm,
                      cudaStream_t st) {
  if (peer != comm->rank || comm->sends.empty() || comm->sends.front().second != c * NcclSize(t)) {
    return ncclInvalidUsage;
  }
  const void* src = comm->sends.front().first;
  comm->sends.pop_front();
  const size_t n = c * NcclSize(t);
  Resolve(st)->Push([src, r, n] { std::memmove(r, src, n); });
  return ncclSuccess;
}

}  // extern "C"
