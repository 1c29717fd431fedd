#include "colossus/parallel/process_group.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/comm/gloo.h"
#include "colossus/comm/in_memory_store.h"
#include "colossus/comm/nccl.h"
#include "colossus/comm/prefix_store.h"
#include "colossus/comm/tcp_store.h"

namespace colossus::parallel {
namespace {

StoreFactory& CoordinatorFactory() {
  static StoreFactory* factory = new StoreFactory();
  return *factory;
}

// Rank 0's server and its own client, kept alive together by the store pointer handed
// out (members die in reverse order: the client first, then the server).
struct ServedStore {
  std::unique_ptr<comm::TcpStoreServer> server;
  std::unique_ptr<comm::TcpStore> client;
};

// How long rank 0 keeps its store server up for the others' goodbyes.
constexpr absl::Duration kShutdownGrace = absl::Seconds(10);

}  // namespace

absl::StatusOr<std::shared_ptr<comm::Store>> MakeTcpRendezvousStore(const DistEnv& env,
                                                                    absl::Duration connect_timeout) {
  comm::TcpStoreOptions options;
  options.connect_timeout = connect_timeout;
  auto served = std::make_shared<ServedStore>();
  if (env.rank == 0) {
    absl::StatusOr<std::unique_ptr<comm::TcpStoreServer>> server =
        comm::TcpStoreServer::Start(env.master_addr, env.master_port);
    if (!server.ok()) {
      return absl::UnavailableError(absl::StrFormat(
          "rank 0: cannot serve the rendezvous store on MASTER_ADDR=%s MASTER_PORT=%d: %s",
          env.master_addr, env.master_port, server.status().message()));
    }
    served->server = *std::move(server);
  }
  absl::StatusOr<std::unique_ptr<comm::TcpStore>> client =
      comm::TcpStore::Connect(env.master_addr, env.master_port, options);
  if (!client.ok()) {
    return absl::UnavailableError(absl::StrFormat(
        "rank %d: cannot reach rank 0's rendezvous store at MASTER_ADDR=%s MASTER_PORT=%d "
        "within %s: %s",
        env.rank, env.master_addr, env.master_port, absl::FormatDuration(connect_timeout),
        client.status().message()));
  }
  served->client = *std::move(client);
  comm::Store* store = served->client.get();
  return std::shared_ptr<comm::Store>(std::move(served), store);
}

void SetCoordinatorStoreFactory(StoreFactory factory) { CoordinatorFactory() = std::move(factory); }

absl::StatusOr<std::shared_ptr<comm::Store>> DefaultStore(const DistEnv& env) {
  if (!env.coordinator.empty()) {
    if (!CoordinatorFactory()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "COLOSSUS_COORDINATOR=%s is set, but this program has no coordinator store linked "
          "in (SetCoordinatorStoreFactory); unset it to rendezvous through MASTER_ADDR:"
          "MASTER_PORT",
          env.coordinator));
    }
    return CoordinatorFactory()(env);
  }
  return MakeTcpRendezvousStore(env);
}

absl::StatusOr<std::unique_ptr<ProcessGroup>> ProcessGroup::FromEnvironment(
    const ProcessGroupOptions& options) {
  absl::StatusOr<std::optional<DistEnv>> env = ReadDistEnv(ProcessEnv());
  if (!env.ok()) return env.status();
  if (!env->has_value()) return std::unique_ptr<ProcessGroup>();
  return Create(**env, options);
}

absl::StatusOr<std::unique_ptr<ProcessGroup>> ProcessGroup::Create(
    const DistEnv& env, const ProcessGroupOptions& options) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("process group: rank %d of %d is impossible", env.rank, env.world_size));
  }
  std::unique_ptr<ProcessGroup> group(new ProcessGroup(env));
  if (env.world_size == 1) {
    // Nobody to meet: an in-process store is all the one-rank communicator needs.
    group->store_ = std::make_shared<comm::InMemoryStore>();
  } else {
    absl::StatusOr<std::shared_ptr<comm::Store>> store =
        options.store_factory ? options.store_factory(env) : DefaultStore(env);
    if (!store.ok()) return store.status();
    group->store_ = *std::move(store);
  }
  const std::string prefix = absl::StrCat(
      "colossus/", env.job_id.empty() ? "job" : env.job_id, "/gen", env.generation, "/world");
  group->scoped_store_ = std::make_shared<comm::PrefixStore>(group->store_, prefix);

  comm::CommOptions co;
  co.name = "world";
  co.timeout = options.timeout;
  co.init_timeout = options.init_timeout;
  absl::StatusOr<std::unique_ptr<comm::Communicator>> world;
  if (options.backend == comm::Backend::kGloo) {
    comm::GlooOptions go;
    go.comm = co;
    go.hostname = env.gloo_hostname.empty() ? "127.0.0.1" : env.gloo_hostname;
    world = comm::CreateGlooCommunicator(group->scoped_store_, env.rank, env.world_size, go);
  } else {
    comm::NcclOptions no;
    no.comm = co;
    no.device = env.cuda_device;
    world = comm::CreateNcclCommunicator(group->scoped_store_, env.rank, env.world_size, no);
  }
  if (!world.ok()) {
    return absl::Status(world.status().code(),
                        absl::StrFormat("rank %d of %d: creating the %s world communicator: %s",
                                        env.rank, env.world_size,
                                        comm::BackendName(options.backend),
                                        world.status().message()));
  }
  group->world_ = *std::move(world);
  return group;
}

ProcessGroup::~ProcessGroup() {
  const bool healthy = world_ != nullptr && world_->Health().ok();
  // First the communicator (its watchdog's last Store write completes while rank 0's
  // server is still up), then the goodbye. A broken group skips the handshake: its
  // peers may be gone, and nobody should wait for them.
  world_.reset();
  if (!healthy || env_.world_size == 1 || scoped_store_ == nullptr) return;
  if (env_.rank != 0) {
    (void)scoped_store_->Set(absl::StrCat("shutdown/", env_.rank), "done");
  } else {
    std::vector<std::string> keys;
    for (int r = 1; r < env_.world_size; ++r) keys.push_back(absl::StrCat("shutdown/", r));
    (void)scoped_store_->Wait(keys, kShutdownGrace);
  }
}

}  // namespace colossus::parallel
