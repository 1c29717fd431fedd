// The NCCL backend: creation (unique id through the Store, non-blocking init with a
// deadline), the operations, Split and Abort.
#include "nccl_backend/nccl_communicator.h"

#include <cstring>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/comm/prefix_store.h"
#include "nccl_backend/nccl_check.h"

namespace colossus::comm {
namespace internal {
namespace {

constexpr const char* kUniqueIdKey = "nccl/unique_id";

ncclDataType_t ToNccl(DataType t) {
  switch (t) {
    case DataType::kF32: return ncclFloat32;
    case DataType::kBF16: return ncclBfloat16;
    case DataType::kF16: return ncclFloat16;
    case DataType::kI32: return ncclInt32;
    case DataType::kI64: return ncclInt64;
  }
  return ncclFloat32;  // unreachable: the base class validated dtype
}

ncclRedOp_t ToNccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

std::string Elements(size_t count, DataType dtype) {
  return absl::StrCat(count, " x ", DataTypeName(dtype));
}

ncclConfig_t NonBlockingConfig() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  // Non-blocking: init, split and enqueue return ncclInProgress instead of blocking, so
  // we can poll with a deadline and Abort() is never stuck behind a call in NCCL.
  config.blocking = 0;
  return config;
}

// Creates the stream and scratch buffer of a freshly initialised state.
absl::Status AllocateResources(NcclState& st) {
  COLOSSUS_COMM_CUDA_RETURN_IF_ERROR(cudaSetDevice(st.device));
  COLOSSUS_COMM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking));
  COLOSSUS_COMM_CUDA_RETURN_IF_ERROR(cudaMalloc(&st.scratch, sizeof(int32_t)));
  COLOSSUS_COMM_CUDA_RETURN_IF_ERROR(cudaMemset(st.scratch, 0, sizeof(int32_t)));
  return absl::OkStatus();
}

}  // namespace

NcclCommunicator::NcclCommunicator(std::shared_ptr<NcclState> state,
                                   absl::Duration default_timeout)
    : Communicator(state->rank, state->size, state->name, default_timeout),
      state_(std::move(state)) {}

// The state (shared with outstanding Works) finalises the NCCL communicator.
NcclCommunicator::~NcclCommunicator() = default;

absl::Status NcclCommunicator::Health() const { return state_->Health(); }

void NcclCommunicator::Abort() {
  state_->Break(absl::AbortedError(
      absl::StrCat("nccl: communicator '", name(), "' rank ", rank(), " was aborted")));
}

std::string NcclCommunicator::Where(const Call& call, const std::string& detail) const {
  return absl::StrCat("nccl ", call.op, " (group '", name(), "', seq ", call.seq, ", rank ",
                      rank(), " of ", size(), ", ", detail, ")");
}

Work NcclCommunicator::Enqueue(const Call& call, const std::string& detail, bool empty,
                               const Enqueuer& fn) {
  const std::string where = Where(call, detail);
  if (absl::Status h = Health(); !h.ok()) {
    return Work::Completed(absl::Status(
        h.code(), absl::StrCat(where, ": communicator unusable after an earlier failure; "
                                      "Abort() it and create a new one. First error: ",
                               h.message())));
  }
  if (call.seq != 0) state_->board.Arrive(call.seq, call.op);
  const absl::Time start = absl::Now();
  cudaStream_t stream = call.stream != nullptr ? static_cast<cudaStream_t>(call.stream)
                                               : state_->stream;
  cudaEvent_t event = nullptr;
  absl::Status s;
  {
    std::lock_guard<std::mutex> lock(state_->nccl_mu);
    if (state_->comm == nullptr) {
      s = absl::AbortedError("communicator was aborted");
    } else {
      s = COLOSSUS_COMM_CUDA_STATUS(cudaSetDevice(state_->device));
      if (s.ok() && !empty) s = COLOSSUS_NCCL_STATUS(fn(state_->comm, stream));
    }
  }
  // A non-blocking communicator may still be enqueueing (ncclInProgress): the next
  // NCCL call on it must wait until that settles.
  if (s.ok() && !empty) {
    s = WaitForNcclReady(state_->nccl_mu, state_->comm, start + call.timeout, "enqueue");
  }
  if (s.ok()) s = COLOSSUS_COMM_CUDA_STATUS(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  if (s.ok()) s = COLOSSUS_COMM_CUDA_STATUS(cudaEventRecord(event, stream));
  if (!s.ok()) {
    if (event != nullptr) (void)cudaEventDestroy(event);
    return Work::Completed(state_->Fail(call.op, call.seq, where, s.code(),
                                        std::string(s.message()), absl::Now() - start,
                                        call.timeout));
  }
  return Work(MakeNcclWork(state_, call.op, call.seq, where, event, call.timeout));
}

Work NcclCommunicator::DoAllReduce(const Call& call, const void* send, void* recv, size_t count,
                                   DataType dtype, ReduceOp op) {
  return Enqueue(call, absl::StrCat(Elements(count, dtype), " ", ReduceOpName(op)), count == 0,
                 [&](ncclComm_t comm, cudaStream_t stream) {
                   return ncclAllReduce(send, recv, count, ToNccl(dtype), ToNccl(op), comm,
                                        stream);
                 });
}

Work NcclCommunicator::DoReduceScatter(const Call& call, const void* send, void* recv,
                                       size_t recv_count, DataType dtype, ReduceOp op) {
  return Enqueue(call, absl::StrCat(Elements(recv_count, dtype), " per rank ", ReduceOpName(op)),
                 recv_count == 0, [&](ncclComm_t comm, cudaStream_t stream) {
                   return ncclReduceScatter(send, recv, recv_count, ToNccl(dtype), ToNccl(op),
                                            comm, stream);
                 });
}

Work NcclCommunicator::DoAllGather(const Call& call, const void* send, void* recv,
                                   size_t send_count, DataType dtype) {
  return Enqueue(call, absl::StrCat(Elements(send_count, dtype), " per rank"), send_count == 0,
                 [&](ncclComm_t comm, cudaStream_t stream) {
                   return ncclAllGather(send, recv, send_count, ToNccl(dtype), comm, stream);
                 });
}

Work NcclCommunicator::DoBroadcast(const Call& call, const void* send, void* recv, size_t count,
                                   DataType dtype, int root) {
  // NCCL reads sendbuff on the root only; in place there is sendbuff == recvbuff.
  const void* src = send != nullptr ? send : recv;
  return Enqueue(call, absl::StrCat(Elements(count, dtype), " from root ", root), count == 0,
                 [&](ncclComm_t comm, cudaStream_t stream) {
                   return ncclBroadcast(src, recv, count, ToNccl(dtype), root, comm, stream);
                 });
}

Work NcclCommunicator::DoAllToAll(const Call& call, const void* send, void* recv, size_t count,
                                  DataType dtype) {
  // NCCL has no all-to-all call: one group of size() sends and receives (what
  // nccl-tests' alltoall_perf does); the group launches them as one operation.
  const size_t block = count * DataTypeSize(dtype);
  const int n = size();
  return Enqueue(call, absl::StrCat(Elements(count, dtype), " per rank pair"), count == 0,
                 [&](ncclComm_t comm, cudaStream_t stream) {
                   ncclResult_t r = ncclGroupStart();
                   for (int peer = 0; peer < n && (r == ncclSuccess || r == ncclInProgress);
                        ++peer) {
                     const size_t off = static_cast<size_t>(peer) * block;
                     r = ncclSend(static_cast<const char*>(send) + off, count, ToNccl(dtype),
                                  peer, comm, stream);
                     if (r == ncclSuccess || r == ncclInProgress) {
                       r = ncclRecv(static_cast<char*>(recv) + off, count, ToNccl(dtype), peer,
                                    comm, stream);
                     }
                   }
                   const ncclResult_t end = ncclGroupEnd();
                   return (r == ncclSuccess || r == ncclInProgress) ? end : r;
                 });
}

Work NcclCommunicator::DoBarrier(const Call& call) {
  // NCCL has no barrier: an all-reduce of one int completes on no rank before every
  // rank has contributed. (Stream-ordered like everything else: Wait() on the Work for
  // a host-side barrier.)
  int32_t* scratch = state_->scratch;
  return Enqueue(call, "no data", false, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(scratch, scratch, 1, ncclInt32, ncclSum, comm, stream);
  });
}

Work NcclCommunicator::DoSend(const Call& call, const void* buf, size_t count, DataType dtype,
                              int peer) {
  return Enqueue(call, absl::StrCat(Elements(count, dtype), " to rank ", peer), count == 0,
                 [&](ncclComm_t comm, cudaStream_t stream) {
                   return ncclSend(buf, count, ToNccl(dtype), peer, comm, stream);
                 });
}

Work NcclCommunicator::DoRecv(const Call& call, void* buf, size_t count, DataType dtype,
                              int peer) {
  return Enqueue(call, absl::StrCat(Elements(count, dtype), " from rank ", peer), count == 0,
                 [&](ncclComm_t comm, cudaStream_t stream) {
                   return ncclRecv(buf, count, ToNccl(dtype), peer, comm, stream);
                 });
}

absl::StatusOr<std::unique_ptr<Communicator>> NcclCommunicator::DoSplit(const Call& call,
                                                                        int color, int key,
                                                                        std::string name) {
  const std::string where = Where(call, absl::StrCat("color ", color, " key ", key));
  if (absl::Status h = Health(); !h.ok()) {
    return absl::Status(h.code(), absl::StrCat(where, ": communicator unusable after an earlier "
                                                      "failure. First error: ",
                                               h.message()));
  }
  state_->board.Arrive(call.seq, call.op);
  const absl::Time start = absl::Now();
  ncclComm_t child = nullptr;
  // Outlives the polling below: the split completes asynchronously.
  ncclConfig_t config = NonBlockingConfig();
  absl::Status s;
  {
    std::lock_guard<std::mutex> lock(state_->nccl_mu);
    if (state_->comm == nullptr) {
      s = absl::AbortedError("communicator was aborted");
    } else {
      s = COLOSSUS_COMM_CUDA_STATUS(cudaSetDevice(state_->device));
      if (s.ok()) {
        s = COLOSSUS_NCCL_STATUS(ncclCommSplit(state_->comm,
                                               color >= 0 ? color : NCCL_SPLIT_NOCOLOR, key,
                                               &child, &config));
      }
    }
  }
  // The parent settles once the split's exchange is done; the child once its own init
  // is. Both within the split's timeout.
  if (s.ok()) s = WaitForNcclReady(state_->nccl_mu, state_->comm, start + call.timeout, "split");
  std::unique_ptr<NcclState> child_state;
  if (s.ok() && child != nullptr) {
    std::mutex child_mu;
    s = WaitForNcclReady(child_mu, child, start + call.timeout, "split: child init");
    int child_rank = -1;
    int child_size = 0;
    if (s.ok()) s = COLOSSUS_NCCL_STATUS(ncclCommUserRank(child, &child_rank));
    if (s.ok()) s = COLOSSUS_NCCL_STATUS(ncclCommCount(child, &child_size));
    if (s.ok()) {
      child_state = std::make_unique<NcclState>(
          std::make_shared<PrefixStore>(state_->store, absl::StrCat("split/", call.seq, "/", color)),
          child_rank, child_size, name, state_->device, default_timeout());
      child_state->comm = child;
      child = nullptr;  // owned by child_state from here on
      s = AllocateResources(*child_state);
    }
    if (child != nullptr) (void)ncclCommAbort(child);
  }
  if (!s.ok()) {
    child_state.reset();
    return state_->Fail(call.op, call.seq, where, s.code(), std::string(s.message()),
                        absl::Now() - start, call.timeout);
  }
  if (child_state == nullptr) return std::unique_ptr<Communicator>();  // kSplitNoColor
  return std::unique_ptr<Communicator>(
      new NcclCommunicator(std::move(child_state), default_timeout()));
}

}  // namespace internal

absl::StatusOr<int> NcclDeviceCount() {
  int count = 0;
  COLOSSUS_COMM_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  if (count == 0) return absl::UnavailableError("cudaGetDeviceCount: no CUDA device");
  return count;
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    std::shared_ptr<Store> store, int rank, int size, const NcclOptions& options) {
  using internal::NcclState;
  const std::string& name = options.comm.name;
  const std::string who = absl::StrCat("nccl: creating group '", name, "' (rank ", rank, " of ",
                                       size, ", device ", options.device, ")");
  if (store == nullptr || size < 1 || rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": bad rank or size", store ? "" : ", or no store"));
  }
  if (options.comm.timeout <= absl::ZeroDuration() ||
      options.comm.init_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": timeouts must be positive"));
  }
  absl::StatusOr<int> devices = NcclDeviceCount();
  if (!devices.ok()) {
    return absl::Status(devices.status().code(),
                        absl::StrCat(who, ": no usable GPU: ", devices.status().message()));
  }
  if (options.device < 0 || options.device >= *devices) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": device index out of range (", *devices, " devices)"));
  }
  auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(who, " failed: ", s.message()));
  };
  if (absl::Status s = COLOSSUS_COMM_CUDA_STATUS(cudaSetDevice(options.device)); !s.ok()) {
    return fail(s);
  }
  const absl::Time deadline = absl::Now() + options.comm.init_timeout;

  // The unique id: rank 0 creates it, everyone else reads it from the Store.
  ncclUniqueId id;
  if (rank == 0) {
    if (absl::Status s = COLOSSUS_NCCL_STATUS(ncclGetUniqueId(&id)); !s.ok()) return fail(s);
    if (absl::Status s = store->Set(internal::kUniqueIdKey, std::string_view(id.internal, sizeof(id.internal)));
        !s.ok()) {
      return fail(s);
    }
  } else {
    absl::StatusOr<std::string> v = store->WaitGet(internal::kUniqueIdKey, options.comm.init_timeout);
    if (!v.ok()) {
      if (absl::IsDeadlineExceeded(v.status())) {
        return absl::DeadlineExceededError(absl::StrCat(
            who, ": rank 0 did not publish the ncclUniqueId under store key '", internal::kUniqueIdKey,
            "' within ", absl::FormatDuration(options.comm.init_timeout), ": ",
            v.status().message()));
      }
      return fail(v.status());
    }
    if (v->size() != sizeof(id.internal)) {
      return absl::InternalError(absl::StrCat(who, ": store key '", internal::kUniqueIdKey, "' holds ",
                                              v->size(), " bytes, not an ncclUniqueId (",
                                              sizeof(id.internal), ")"));
    }
    std::memcpy(id.internal, v->data(), sizeof(id.internal));
  }

  auto state = std::make_unique<NcclState>(store, rank, size, name, options.device,
                                           options.comm.timeout);
  ncclConfig_t config = internal::NonBlockingConfig();
  {
    std::lock_guard<std::mutex> lock(state->nccl_mu);
    absl::Status s =
        COLOSSUS_NCCL_STATUS(ncclCommInitRankConfig(&state->comm, size, id, rank, &config));
    if (!s.ok()) {
      if (state->comm != nullptr) (void)ncclCommAbort(state->comm);
      state->comm = nullptr;
      return fail(s);
    }
  }
  absl::Status s = internal::WaitForNcclReady(state->nccl_mu, state->comm, deadline,
                                              "ncclCommInitRankConfig");
  if (!s.ok()) {
    {
      std::lock_guard<std::mutex> lock(state->nccl_mu);
      if (state->comm != nullptr) (void)ncclCommAbort(state->comm);
      state->comm = nullptr;
    }
    if (absl::IsDeadlineExceeded(s)) {
      return absl::DeadlineExceededError(absl::StrCat(
          who, ": NCCL init (unique id from store key '", internal::kUniqueIdKey,
          "') did not complete within ", absl::FormatDuration(options.comm.init_timeout),
          " (are all ", size, " ranks running?); aborted"));
    }
    return fail(s);
  }
  if (absl::Status r = internal::AllocateResources(*state); !r.ok()) return fail(r);
  const absl::Duration timeout = options.comm.timeout;
  return std::unique_ptr<Communicator>(
      new internal::NcclCommunicator(std::shared_ptr<NcclState>(std::move(state)), timeout));
}

}  // namespace colossus::comm
