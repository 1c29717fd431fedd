// The per-rank status file: how a worker tells its agent how far it is, without linking
// anything of the launcher. Optional: a worker that never writes it is reported as
// STARTING until it exits.
//
// Path: the agent passes it as COLOSSUS_STATUS_FILE, <run_dir>/status/gen<G>/rank<R>.json
// (R the global rank, G the generation: a restarted group never reads the old one's).
//
// Format: one JSON object, every field optional:
//   {"step": 120, "total_steps": 1500, "loss": 2.31, "tokens_per_s": 5321.5,
//    "collective_seq": 4410, "collective": "all_reduce"}
//   step            last optimizer step completed (>= 0 means the rank is RUNNING)
//   total_steps     the step count the rank trains to (0 or absent: unknown)
//   loss            the latest training loss
//   tokens_per_s    the rank's (or the job's) recent throughput
//   collective_seq  sequence number of the collective the rank is in or last finished
//   collective      its name
// Writers replace the file atomically (write <path>.tmp, then rename), at most a few times
// a second; the agent reads it at each heartbeat. A file that is missing, half-written
// or not JSON reads as "no status" (never an error: the worker's training matters more).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace colossus::launcher {

struct RankStatusReport {
  int64_t step = -1;
  int64_t total_steps = 0;
  float loss = 0.0f;
  double tokens_per_s = 0.0;
  int64_t collective_seq = 0;
  std::string collective = {};
};

std::string RankStatusPath(const std::string& run_dir, int64_t generation, int rank);

// The report in `path`, or nullopt when there is none readable.
std::optional<RankStatusReport> ReadRankStatus(const std::string& path);

// Writes `report` atomically (tmp + rename), creating the directory. For workers and tests.
absl::Status WriteRankStatus(const std::string& path, const RankStatusReport& report);

}  // namespace colossus::launcher
