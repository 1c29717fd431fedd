// What train_gpt adds when colossus-launch started it (COLOSSUS_COORDINATOR set): the
// runtime may not depend on the launcher, so the worker program wires the two.
//
//   - the process group rendezvouses through the coordinator's store (worker_store.h)
//     instead of rank 0's TCP store;
//   - checkpoints are committed by the coordinator (CoordinatorShardCommitter around
//     CoordinatorClient::ReportShard), and the coordinator's GetLatestCheckpoint names
//     the step to resume from; a resume that falls back past that step (it does not
//     load) tells the coordinator (InvalidateCheckpoints), so status and later restarts
//     name the step actually resumed from;
//   - each rank writes its last completed step to COLOSSUS_STATUS_FILE (status_file.h),
//     at most five times a second, so that the agent can see it run and its hang timeout
//     can see it stop.
//
// Ownership: the hooks share the client; the LauncherLink must outlive the Trainer's Run.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "colossus/trainer.h"

namespace colossus::launcher {
class CoordinatorClient;
}

namespace colossus::examples {

// $COLOSSUS_RUN_DIR/checkpoints when running under the launcher, else "" (no checkpoints).
std::string DefaultCheckpointDir();

class LauncherLink {
 public:
  // nullptr when COLOSSUS_COORDINATOR is unset (not under the launcher). Registers the
  // coordinator store factory (process_group.h). InvalidArgument naming the variable
  // for a missing job id or token file.
  static absl::StatusOr<std::unique_ptr<LauncherLink>> FromEnvironment();
  ~LauncherLink();

  // The trainer's hooks (trainer.h) for this worker.
  TrainerHooks Hooks();

 private:
  LauncherLink() = default;
  std::shared_ptr<launcher::CoordinatorClient> client_;
  std::string status_file_;
};

}  // namespace colossus::examples
