// For worker programs started by colossus-launch: the coordinator's Store, built from
// the environment the agent sets (worker_env.h), so that a worker rendezvouses through
// the coordinator (generation-scoped keys) instead of rank 0's TCP store.
//
//   COLOSSUS_COORDINATOR  host:port        COLOSSUS_JOB_ID       the job
//   COLOSSUS_TOKEN_FILE   the token's file COLOSSUS_GENERATION   the worker's generation
//   COLOSSUS_TLS_CA / COLOSSUS_TLS_CERT / COLOSSUS_TLS_KEY  optional TLS files
//   COLOSSUS_STORE        optional: the node agent's store relay ("unix:<path>",
//                         store_relay.h); when set the store's calls go there (one
//                         upstream StoreWait per node) and COLOSSUS_COORDINATOR is only
//                         named in messages
//
// A trainer links it with one line in main() (runtime/ cannot depend on launcher/):
//   colossus::parallel::SetCoordinatorStoreFactory(
//       [](const colossus::parallel::DistEnv&) { return colossus::launcher::CoordinatorStoreFromEnvironment(); });
//
// Errors: InvalidArgument naming the variable that is missing or malformed, or the token
// file that cannot be read.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "colossus/comm/store.h"
#include "colossus/launcher/node_identity.h"

namespace colossus::launcher {

absl::StatusOr<std::shared_ptr<comm::Store>> CoordinatorStoreFromEnvironment(
    const EnvLookupFn& env = ProcessEnvironment());

}  // namespace colossus::launcher
