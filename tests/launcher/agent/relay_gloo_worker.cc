// A worker for the relay's end-to-end test: under colossus-launch it must find its node's
// store relay in COLOSSUS_STORE (exit 4 otherwise; with --direct it must NOT find one,
// exit 5 otherwise: the agent could not start it), form a Gloo group over the store
// built from the environment (CoordinatorStoreFromEnvironment: through the relay), and
// all-reduce; it writes "ok <sum>" to $COLOSSUS_RUN_DIR/gloo.rank<R> (exit 3 on an error,
// with the error on stderr).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "colossus/comm/gloo.h"
#include "colossus/comm/prefix_store.h"
#include "colossus/launcher/worker_store.h"

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "relay_gloo_worker: %s\n", what.c_str());
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--direct") {
    if (!Env("COLOSSUS_STORE").empty()) {
      std::fprintf(stderr, "relay_gloo_worker: COLOSSUS_STORE='%s' is set\n", Env("COLOSSUS_STORE").c_str());
      return 5;
    }
  } else if (Env("COLOSSUS_STORE").rfind("unix:", 0) != 0) {
    std::fprintf(stderr, "relay_gloo_worker: COLOSSUS_STORE='%s' is not the node's relay\n",
                 Env("COLOSSUS_STORE").c_str());
    return 4;
  }
  const int rank = std::atoi(Env("RANK").c_str());
  const int world = std::atoi(Env("WORLD_SIZE").c_str());
  absl::StatusOr<std::shared_ptr<colossus::comm::Store>> store =
      colossus::launcher::CoordinatorStoreFromEnvironment();
  if (!store.ok()) return Fail(store.status().ToString());
  colossus::comm::GlooOptions o;
  o.comm.timeout = absl::Seconds(30);
  o.comm.init_timeout = absl::Seconds(30);
  auto scoped = std::make_shared<colossus::comm::PrefixStore>(*store, "e2e-group");
  absl::StatusOr<std::unique_ptr<colossus::comm::Communicator>> comm =
      colossus::comm::CreateGlooCommunicator(scoped, rank, world, o);
  if (!comm.ok()) return Fail(comm.status().ToString());
  std::vector<float> x(1000, static_cast<float>(rank + 1));
  absl::Status s = (*comm)->AllReduce(x.data(), x.data(), x.size(), colossus::comm::DataType::kF32,
                                      colossus::comm::ReduceOp::kSum)
                       .Wait();
  if (!s.ok()) return Fail(s.ToString());
  std::ofstream(Env("COLOSSUS_RUN_DIR") + "/gloo.rank" + std::to_string(rank)) << "ok " << x[999] << "\n";
  return 0;
}
