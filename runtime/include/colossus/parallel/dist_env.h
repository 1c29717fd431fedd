// The distributed environment of a worker process, torchrun-compatible.
//
// A launcher (torchrun, colossus-launch, scripts/local_launch.sh, Slurm through the
// agent) starts one process per rank and tells each who it is through the
// environment:
//   WORLD_SIZE        number of ranks in the job (>= 1). Unset: a single process that
//                     joins no group (no communicator, the plain trainer).
//   RANK              this process's rank, in [0, WORLD_SIZE). Required with WORLD_SIZE.
//   LOCAL_RANK        rank among the processes of this node (picks the GPU); default RANK.
//   LOCAL_WORLD_SIZE  processes on this node; optional, LOCAL_RANK < LOCAL_WORLD_SIZE.
//   MASTER_ADDR       where rank 0 serves the rendezvous TCP store (an address or host
//   MASTER_PORT       name every rank can reach, and a port 1..65535). Required when
//                     WORLD_SIZE > 1 and no coordinator is named.
//   COLOSSUS_COORDINATOR  host:port of the job's coordinator; when set, its Store
//                     replaces the TCP store (process_group.h), MASTER_* are optional.
//   COLOSSUS_GENERATION   the worker group's generation (>= 0, default 0): rendezvous keys
//                     live under a per-generation prefix, so a restarted group never
//                     reads what the previous one left (ARCHITECTURE.md, principle 4).
//   COLOSSUS_JOB_ID   optional job id (part of the prefix).
//   COLOSSUS_GLOO_HOSTNAME  the address this rank advertises to its Gloo peers; default
//                     127.0.0.1 when MASTER_ADDR is a loopback address, else this host's
//                     name (gethostname).
//   CUDA_VISIBLE_DEVICES  when it names exactly one device, that device is cuda:0 for
//                     this process whatever LOCAL_RANK is (how the agent pins a GPU).
//
// Errors name the variable and its value, e.g.
//   "RANK=4 is out of range for WORLD_SIZE=4 (ranks are 0..3)".
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace colossus::parallel {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 0;   // 0: not given
  std::string master_addr;    // "" when not given
  int master_port = 0;        // 0 when not given
  std::string coordinator;    // COLOSSUS_COORDINATOR; "" = none
  int64_t generation = 0;
  std::string job_id;
  std::string gloo_hostname;  // resolved as described above
  int cuda_device = 0;        // the GPU index this rank uses when the device is CUDA

  // "rank 1 of 4 (local 1), store 127.0.0.1:29500, generation 0"
  std::string DebugString() const;
};

// Looks a variable up: its value, or nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;

// The process's real environment (getenv).
EnvLookup ProcessEnv();

// Reads and checks the variables above. nullopt when WORLD_SIZE is unset (a plain
// single-process run; RANK, if set, must then be 0). InvalidArgument naming the variable
// for anything missing, malformed or inconsistent.
absl::StatusOr<std::optional<DistEnv>> ReadDistEnv(const EnvLookup& lookup = ProcessEnv());

}  // namespace colossus::parallel
