// NcclCommunicator: the Communicator over one ncclComm_t (created non-blocking).
//
// Operation life cycle (Enqueue): refuse if broken -> publish arrival on the board ->
// under the NCCL mutex: enqueue the NCCL call on the stream (a non-blocking
// communicator may answer ncclInProgress: poll until it settles) and record a CUDA
// event -> return a Work (NcclWork) that polls the event and the communicator's async
// error. On a failure or the watchdog's timeout the Work records the group's first
// failure on the board, aborts the communicator (peers blocked on us then fail with a
// remote error instead of waiting for their own timeouts), and names the ranks that
// did not arrive.
//
// Ownership: NcclState holds the ncclComm_t, the communicator's stream and scratch
// buffer; the communicator and every Work share it, so a Work outlives its
// communicator safely. The state's destructor finalises the communicator (bounded by
// the default timeout, then aborts).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "colossus/comm/communicator.h"
#include "colossus/comm/nccl.h"
#include "colossus/comm/store.h"
#include "watchdog/arrival_board.h"

namespace colossus::comm::internal {

class NcclState {
 public:
  NcclState(std::shared_ptr<Store> store, int rank, int size, std::string name, int device,
            absl::Duration default_timeout);
  ~NcclState();
  NcclState(const NcclState&) = delete;
  NcclState& operator=(const NcclState&) = delete;

  // Serialises every NCCL host call on comm (NCCL communicators are not thread-safe);
  // never held while waiting for peers.
  std::mutex nccl_mu;
  ncclComm_t comm = nullptr;      // guarded by nccl_mu; null once aborted
  cudaStream_t stream = nullptr;  // the communicator's own stream
  int32_t* scratch = nullptr;     // one device int for Barrier

  const std::shared_ptr<Store> store;
  const int rank;
  const int size;
  const std::string name;
  const int device;
  const absl::Duration default_timeout;
  ArrivalBoard board;

  absl::Status Health() const;
  // Marks the state broken with `status` (first error wins) and aborts the NCCL
  // communicator. Thread-safe.
  void Break(const absl::Status& status);
  // ncclCommGetAsyncError under nccl_mu (ncclInvalidUsage... once aborted: reports
  // ncclSuccess and lets Health() speak).
  ncclResult_t AsyncError();
  // The failure path shared by enqueue errors, async errors and the watchdog: records
  // on the board, breaks, and returns the Status naming op/seq/group/missing ranks.
  absl::Status Fail(const char* op, uint64_t seq, const std::string& where, absl::StatusCode code,
                    const std::string& message, absl::Duration elapsed, absl::Duration timeout);

 private:
  void AbortLocked();  // REQUIRES: nccl_mu held

  mutable std::mutex health_mu_;
  absl::Status health_;  // guarded by health_mu_
};

class NcclCommunicator final : public Communicator {
 public:
  // Takes an initialised state (comm, stream and scratch set).
  NcclCommunicator(std::shared_ptr<NcclState> state, absl::Duration default_timeout);
  ~NcclCommunicator() override;

  Backend backend() const override { return Backend::kNccl; }
  void Abort() override;
  absl::Status Health() const override;

 protected:
  Work DoAllReduce(const Call& call, const void* send, void* recv, size_t count, DataType dtype,
                   ReduceOp op) override;
  Work DoReduceScatter(const Call& call, const void* send, void* recv, size_t recv_count,
                       DataType dtype, ReduceOp op) override;
  Work DoAllGather(const Call& call, const void* send, void* recv, size_t send_count,
                   DataType dtype) override;
  Work DoBroadcast(const Call& call, const void* send, void* recv, size_t count, DataType dtype,
                   int root) override;
  Work DoAllToAll(const Call& call, const void* send, void* recv, size_t count,
                  DataType dtype) override;
  Work DoBarrier(const Call& call) override;
  Work DoSend(const Call& call, const void* buf, size_t count, DataType dtype, int peer) override;
  Work DoRecv(const Call& call, void* buf, size_t count, DataType dtype, int peer) override;
  absl::StatusOr<std::unique_ptr<Communicator>> DoSplit(const Call& call, int color, int key,
                                                        std::string name) override;

 private:
  using Enqueuer = std::function<ncclResult_t(ncclComm_t, cudaStream_t)>;
  // One operation, as described at the top of this file. `detail` describes the
  // arguments for messages ("1009 x bf16 sum"); `empty`: nothing to transfer (count 0),
  // so only the event is recorded.
  Work Enqueue(const Call& call, const std::string& detail, bool empty, const Enqueuer& fn);
  std::string Where(const Call& call, const std::string& detail) const;

  const std::shared_ptr<NcclState> state_;
};

// Polls ncclCommGetAsyncError(comm) until it is not ncclInProgress or `deadline`
// passes (then DeadlineExceeded). `mu` is released between polls.
absl::Status WaitForNcclReady(std::mutex& mu, const ncclComm_t& comm, absl::Time deadline,
                              const char* what);

// The work handle of one enqueued operation.
std::shared_ptr<WorkState> MakeNcclWork(std::shared_ptr<NcclState> state, const char* op,
                                        uint64_t seq, std::string where, cudaEvent_t event,
                                        absl::Duration timeout);

}  // namespace colossus::comm::internal
