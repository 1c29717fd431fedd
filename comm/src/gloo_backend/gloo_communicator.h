// GlooCommunicator: the Communicator over a Gloo context with a full TCP mesh.
//
// Operation life cycle (Run): refuse if broken -> publish arrival -> run the Gloo
// algorithm with the op's timeout -> on any exception: record the group's first failure
// on the arrival board, close every connection (so peers fail now rather than at their
// own timeouts), read the board for the ranks that did not arrive, and return a Status
// that names op, seq, group, rank and those ranks. The communicator stays broken.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "colossus/comm/communicator.h"
#include "colossus/comm/gloo.h"
#include "colossus/comm/store.h"
#include "gloo/rendezvous/context.h"
#include "gloo/transport/device.h"
#include "watchdog/arrival_board.h"

namespace colossus::comm::internal {

class GlooCommunicator final : public Communicator {
 public:
  // store: this group's scope. device: shared with the parent for Split children
  // (nullptr: create one for options.hostname).
  static absl::StatusOr<std::unique_ptr<GlooCommunicator>> Create(
      std::shared_ptr<Store> store, int rank, int size, const GlooOptions& options,
      std::shared_ptr<gloo::transport::Device> device);
  ~GlooCommunicator() override;

  Backend backend() const override { return Backend::kGloo; }
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
  GlooCommunicator(std::shared_ptr<Store> store, int rank, int size, const GlooOptions& options,
                   std::shared_ptr<gloo::transport::Device> device,
                   std::shared_ptr<gloo::rendezvous::Context> context);

  // One operation, as described at the top of this file. `detail` describes the
  // arguments for messages ("1009 x bf16 sum").
  absl::Status Run(const Call& call, const std::string& detail, const std::function<void()>& body);
  // Marks the communicator broken with `status` (first error wins) and closes every
  // connection. Thread-safe.
  void Break(const absl::Status& status);

  const std::shared_ptr<Store> store_;
  const GlooOptions options_;
  const std::shared_ptr<gloo::transport::Device> device_;
  const std::shared_ptr<gloo::rendezvous::Context> context_;
  ArrivalBoard board_;

  mutable std::mutex health_mu_;
  absl::Status health_;  // guarded by health_mu_; OK until the first failure or Abort
  bool closed_ = false;  // guarded by health_mu_: connections already torn down

  // Point-to-point message counters per peer; the n-th message takes slot tag n.
  std::vector<uint32_t> sent_to_;
  std::vector<uint32_t> received_from_;
};

}  // namespace colossus::comm::internal
