// ProcessGroup: the ranks of one training job and the communicator they share.
//
// Created once per worker from its DistEnv (dist_env.h):
//   1. a Store for rendezvous, from a StoreFactory. The default factory uses the
//      torchrun convention: rank 0 serves a TcpStoreServer on MASTER_ADDR:MASTER_PORT
//      and every rank (rank 0 included) connects a TcpStore client to it. When
//      COLOSSUS_COORDINATOR is set the factory registered with
//      SetCoordinatorStoreFactory (the launcher's CoordinatorStore) is used instead; the
//      trainer does not change.
//   2. the world communicator over that store, under the prefix
//      "colossus/<job id>/gen<generation>/world" (a restarted group never sees keys of
//      the previous generation): Gloo for CPU training, NCCL (device env.cuda_device) for
//      CUDA. A WORLD_SIZE of 1 needs no store at all: an in-process store backs the
//      one-rank communicator.
// Data parallelism uses the world communicator as its group today; tensor parallelism
// will Split it.
//
// Shutdown: the destructor tears the communicator down, then ranks > 0 tell rank 0
// they are done and rank 0 waits (a few seconds at most) before its store server goes
// away, so that no rank's last Store write finds the server gone.
//
// Thread safety: rank(), size() and env() from any thread; the communicator as in
// communicator.h. Not copyable.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colossus/comm/communicator.h"
#include "colossus/comm/store.h"
#include "colossus/parallel/dist_env.h"

namespace colossus::parallel {

// Makes the rendezvous Store for `env`. The returned pointer owns whatever keeps the
// store alive (rank 0's TCP server, a gRPC channel).
using StoreFactory =
    std::function<absl::StatusOr<std::shared_ptr<comm::Store>>(const DistEnv& env)>;

// The torchrun convention: rank 0 starts a TcpStoreServer bound to
// MASTER_ADDR:MASTER_PORT, every rank connects to it (retrying while rank 0 starts).
// Unavailable naming the address when the server cannot bind or the client cannot
// connect within `connect_timeout`.
absl::StatusOr<std::shared_ptr<comm::Store>> MakeTcpRendezvousStore(
    const DistEnv& env, absl::Duration connect_timeout = absl::Seconds(120));

// Registers the factory used when COLOSSUS_COORDINATOR is set (the launcher links one
// in). Not thread-safe against concurrent ProcessGroup creation; call it from main().
void SetCoordinatorStoreFactory(StoreFactory factory);

// The default: the registered coordinator factory when env.coordinator is set (a clear
// FailedPrecondition when none is registered), else MakeTcpRendezvousStore.
absl::StatusOr<std::shared_ptr<comm::Store>> DefaultStore(const DistEnv& env);

struct ProcessGroupOptions {
  comm::Backend backend = comm::Backend::kGloo;
  // Default per-collective timeout (the watchdog's limit) and the rendezvous limit.
  absl::Duration timeout = absl::Minutes(5);
  absl::Duration init_timeout = absl::Minutes(5);
  // null: DefaultStore.
  StoreFactory store_factory;
};

class ProcessGroup {
 public:
  // Makes the store (options.store_factory) and the world communicator. Collective:
  // every rank of env.world_size calls it. Errors name the rank and the step that
  // failed (store, communicator).
  static absl::StatusOr<std::unique_ptr<ProcessGroup>> Create(const DistEnv& env,
                                                              const ProcessGroupOptions& options);
  // Reads the process environment (ReadDistEnv) and creates the group; nullptr (not an
  // error) when WORLD_SIZE is unset.
  static absl::StatusOr<std::unique_ptr<ProcessGroup>> FromEnvironment(
      const ProcessGroupOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return env_.rank; }
  int size() const { return env_.world_size; }
  const DistEnv& env() const { return env_; }
  comm::Backend backend() const { return world_->backend(); }
  // Every rank of the job. Owned by the group.
  comm::Communicator& world() const { return *world_; }
  // The data-parallel group (the world until tensor parallelism splits it).
  comm::Communicator& dp() const { return *world_; }
  // The rendezvous store, scoped to this group's prefix.
  const std::shared_ptr<comm::Store>& store() const { return scoped_store_; }

 private:
  explicit ProcessGroup(DistEnv env) : env_(std::move(env)) {}

  DistEnv env_;
  std::shared_ptr<comm::Store> store_;         // the factory's (owns rank 0's server)
  std::shared_ptr<comm::Store> scoped_store_;  // store_ under the group's prefix
  std::unique_ptr<comm::Communicator> world_;
};

}  // namespace colossus::parallel
