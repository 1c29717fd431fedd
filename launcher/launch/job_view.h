// What colossus-launch shows of a job: the live status line, one line per job event, the
// failure summary. Pure formatting of the coordinator's JobStatus and JobEvent messages.
#pragma once

#include <deque>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.pb.h"

namespace colossus::launcher {

namespace v1 = ::colossus::coordinator::v1;

// "gen 2 | running | nodes 2/2 | ranks 4 | step 141/1500 | loss 2.314 | 12.3k tok/s |
//  ETA 4m10s | restarts 1/3 | 1m23s"
// step counts the steps the slowest running rank has completed, over the total the ranks
// train to when they report one; loss is the mean over the ranks that report one;
// tokens/s the sum of the ranks' own throughputs; ETA is `eta` when given. Unknown
// figures are left out.
std::string StatusLine(const v1::JobStatus& status, absl::Duration elapsed,
                       std::optional<absl::Duration> eta = std::nullopt);

// Steps completed by the slowest running rank (min_step + 1), and the largest total any
// running rank reports (0: none does).
int64_t StepsDone(const v1::JobStatus& status);
int64_t TotalSteps(const v1::JobStatus& status);

// The time left, from the job's recent step rate: the launcher feeds it every status it
// polls. The rate is measured over the last `window` of one generation's progress, so a
// restart (new generation, or steps going back to a checkpoint) starts a new measurement
// instead of counting the time lost in recovery as slow steps. Not thread-safe.
class EtaEstimator {
 public:
  explicit EtaEstimator(absl::Duration window = absl::Seconds(60)) : window_(window) {}

  void Observe(const v1::JobStatus& status, absl::Time now);

  // Nothing until the samples span 2 s and at least one step, or without a total.
  std::optional<absl::Duration> Remaining() const;

 private:
  struct Sample {
    absl::Time at;
    int64_t done;
  };
  absl::Duration window_;
  int64_t generation_ = -1;
  int64_t total_ = 0;
  std::deque<Sample> samples_;
};

// The event's message (the coordinator writes whole sentences naming node, rank and
// cause), or a short line from its kind and fields when it has none.
std::string EventLine(const v1::JobEvent& event);

// The summary printed when the job failed: the reason, then for every FAILED rank its
// node, rank, exit code or signal and the last lines of its log (the detail its agent
// sent, or the log file under run_dir when this machine has it).
std::string FailureSummary(const v1::JobStatus& status, const std::string& run_dir);

std::string PhaseName(v1::JobPhase phase);

}  // namespace colossus::launcher
