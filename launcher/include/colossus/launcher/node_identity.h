// Who this node agent is: its node id, address, worker count, GPUs and coordinator,
// from flags, then COLOSSUS_* environment, then Slurm's SLURM_* (under `srun`).
//
// Precedence per field: a flag that was given; then the environment
//   COLOSSUS_NODE_ID, COLOSSUS_NODE_ADDRESS, COLOSSUS_WORKERS, COLOSSUS_GPUS,
//   COLOSSUS_COORDINATOR;
// then Slurm, when SLURM_JOB_ID or SLURM_PROCID is set:
//   node id   SLURMD_NODENAME (else the host name); with several agents on one node
//             (SLURM_NTASKS > SLURM_NNODES) "-<SLURM_LOCALID>" is appended so each is
//             unique. Ranks follow node ids in string order, as the coordinator sorts.
//   address   SLURMD_NODENAME (else the host name)
//   workers   SLURM_GPUS_ON_NODE, else the entries of CUDA_VISIBLE_DEVICES that Slurm set
//   gpus      CUDA_VISIBLE_DEVICES as Slurm set it (when it holds indices)
//   coordinator  a coordinator given as ":PORT" (no host) is completed with the first
//             host of SLURM_JOB_NODELIST ("gpu[003-010,012],cpu1" -> "gpu003"): the
//             batch script runs the coordinator on the job's first node.
// then defaults: node id and address = the host name; workers = the GPU count, or 1.
//
// With GPUs, local rank i gets gpus[i] (CUDA_VISIBLE_DEVICES), and workers must equal the
// number of GPUs. Errors (InvalidArgument) name the flag or variable and its value.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace colossus::launcher {

struct NodeIdentityFlags {
  std::string node_id = {};
  std::string address = {};
  int workers = 0;           // 0: not given
  std::string gpus = {};     // "" not given; "none"; "0,1,2,3" indices; or a count "4"
  std::string coordinator = {};
};

struct NodeIdentity {
  std::string node_id;
  std::string address;
  int workers = 1;
  std::vector<int> gpus;  // empty: CPU workers
  std::string coordinator;  // "host:port"
  bool from_slurm = false;
};

using EnvLookupFn = std::function<std::optional<std::string>(const char* name)>;
// getenv.
EnvLookupFn ProcessEnvironment();

absl::StatusOr<NodeIdentity> ResolveNodeIdentity(const NodeIdentityFlags& flags,
                                                 const EnvLookupFn& env,
                                                 const std::string& hostname);

// The first host of a Slurm host list ("a,b", "node[01-04]", "gpu[003-010,012],cpu1").
// InvalidArgument for an empty or malformed list.
absl::StatusOr<std::string> FirstSlurmHost(std::string_view nodelist);

// This machine's host name (gethostname).
std::string LocalHostname();

}  // namespace colossus::launcher
