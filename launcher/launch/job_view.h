// What colossus-launch shows of a job: the live status line, one line per job event, the
// failure summary. Pure formatting of the coordinator's JobStatus and JobEvent messages.
#pragma once

#include <string>

#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.pb.h"

namespace colossus::launcher {

namespace v1 = ::colossus::coordinator::v1;

// "gen 2 | nodes 2/2 | ranks 4 | step 140 | loss 2.314 | 12.3k tok/s | restarts 1/3 | 1m23s"
// step is the slowest running rank's; loss the mean over the ranks that report one;
// tokens/s the sum of the ranks' own throughputs. Unknown figures are left out.
std::string StatusLine(const v1::JobStatus& status, absl::Duration elapsed);

// The event's message (the coordinator writes whole sentences naming node, rank and
// cause), or a short line from its kind and fields when it has none.
std::string EventLine(const v1::JobEvent& event);

// The summary printed when the job failed: the reason, then for every FAILED rank its
// node, rank, exit code or signal and the last lines of its log (the detail its agent
// sent, or the log file under run_dir when this machine has it).
std::string FailureSummary(const v1::JobStatus& status, const std::string& run_dir);

std::string PhaseName(v1::JobPhase phase);

}  // namespace colossus::launcher
