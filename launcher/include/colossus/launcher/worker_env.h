// The environment a worker process starts with: torchrun-compatible variables plus
// Colossus's own. The agent computes it per rank from its Join assignment; the
// supervisor sets it on top of the agent's environment (and the manifest's env).
//
//   RANK, WORLD_SIZE                 global rank and the number of ranks
//   LOCAL_RANK, LOCAL_WORLD_SIZE     the rank on this node and the node's worker count
//   GROUP_RANK, GROUP_WORLD_SIZE     this node's index in the generation, number of nodes
//   ROLE_RANK, ROLE_WORLD_SIZE       = RANK, WORLD_SIZE (torchrun's single role)
//   MASTER_ADDR, MASTER_PORT         where rank 0 serves the process group's TCP store
//   TORCHELASTIC_RESTART_COUNT       restarts spent so far, TORCHELASTIC_MAX_RESTARTS
//   TORCHELASTIC_RUN_ID              the job id
//   COLOSSUS_COORDINATOR             the coordinator's "host:port"
//   COLOSSUS_JOB_ID                  the job id
//   COLOSSUS_GENERATION              the generation the worker belongs to (decimal)
//   COLOSSUS_TOKEN_FILE              file holding the job's token (never the token itself:
//                                    the environment of a process is readable in /proc)
//   COLOSSUS_RUN_DIR                 the job's run directory
//   COLOSSUS_NODE_ID                 the node's id in the job
//   COLOSSUS_STATUS_FILE             where the worker may write its status (status_file.h)
//   COLOSSUS_STORE                   the node's store relay, "unix:<path>" (store_relay.h),
//                                    only when the agent runs one
//   CUDA_VISIBLE_DEVICES             the worker's GPU index, only where the node has GPUs
//   OMP_NUM_THREADS                  1 when several workers share a node and the base
//                                    environment does not set it (as torchrun does: N
//                                    workers each using every core oversubscribe them)
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace colossus::launcher {

struct WorkerEnvInputs {
  int rank = 0;
  int local_rank = 0;
  int world_size = 1;
  int local_world_size = 1;
  int group_rank = 0;
  int num_nodes = 1;
  std::string master_addr;
  int master_port = 0;
  std::string coordinator;
  std::string job_id;
  int64_t generation = 0;
  int restarts = 0;
  int max_restarts = 0;
  std::string token_file;
  std::string run_dir;
  std::string node_id;
  std::string status_file;
  // The store relay's target for COLOSSUS_STORE; empty: not set.
  std::string store;
  // GPU index for CUDA_VISIBLE_DEVICES; -1: the node has no GPUs (variable not set).
  int gpu_index = -1;
  // Whether the worker's base environment already sets OMP_NUM_THREADS.
  bool omp_threads_set = false;
};

// The variables above, in that order, as (key, value) pairs.
std::vector<std::pair<std::string, std::string>> WorkerEnvironment(const WorkerEnvInputs& in);

}  // namespace colossus::launcher
