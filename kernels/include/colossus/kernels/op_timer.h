// Timestamps taken on a backend's stream, for per-op profiles (profiling_backend.h).
//
// Mark() records a point in time after all work enqueued on the backend so far;
// Resolve() waits for the marks and returns their times, in milliseconds since the
// first. Two clocks, chosen by the backend's kind:
//   * CPU: the host's steady clock when Mark is called. CPU ops complete before they
//     return, so a mark after an op is the op's end.
//   * CUDA: a cudaEvent recorded on the backend's stream (CudaStreamOf). The times are
//     the GPU's: a gap between one op's end mark and the next op's start mark is time
//     the GPU spent idle, waiting for the host to launch more work.
// Each mark costs an event record on CUDA (about a microsecond of host time, nothing on
// the GPU), so a profile perturbs a launch-bound step slightly; the profile says so.
//
// Thread safety: one thread, the backend's.
#pragma once

#include <memory>
#include <vector>

#include "colossus/kernels/backend.h"

namespace colossus::kernels {

class OpTimer {
 public:
  virtual ~OpTimer() = default;
  // A timestamp after all work enqueued on the backend so far.
  virtual void Mark() = 0;
  // Waits for every mark; returns their times in ms since the first mark (so the first
  // is 0), in the order they were made, and forgets them.
  virtual std::vector<double> Resolve() = 0;
};

// The clock for `backend` (see above). REQUIRES: backend outlives the timer.
std::unique_ptr<OpTimer> MakeOpTimer(const Backend& backend);

}  // namespace colossus::kernels
