// GradReducer: data-parallel gradient averaging by buckets, overlapped with backward.
//
// Buckets. The model's gradients are one flat f32 buffer (model.h). Walking the
// parameters from the last to the first (the order in which backward finishes them),
// consecutive parameters are grouped into buckets of at least `bucket_bytes` (the last
// one may be smaller; a parameter larger than the limit is a bucket of its own; a
// bucket never splits a parameter). Each bucket is one contiguous range of the flat
// buffer, from its first parameter's start to its last one's end, alignment gaps
// included (they are zero and stay zero). Bucket 0 holds the last parameters.
//
// Overlap. During the last micro-batch's backward, GPT::Backward reports which
// gradients are final (GradsReadyFn; pass OnGradsReady). A bucket whose parameters are
// all final is handed to a communication thread, which all-reduces it (sum, in place)
// while backward goes on with earlier layers. Buckets are launched strictly in index
// order, so every rank issues the same collectives in the same order (communicator.h);
// a bucket that is ready early waits for its predecessors. Finish() launches whatever
// was not launched (all of it when no hook was used: overlap off) and waits for every
// bucket. The caller scales the loss so that the SUM over ranks is the average
// (GPT::Backward's loss_scale = 1 / (micro-batches x ranks)), which is what NCCL does
// too and costs no extra pass.
//
// On an asynchronous backend (CUDA), the gradients of a launched bucket must be
// complete before the communicator reads them from its own stream: the main thread
// synchronizes the backend before each hand-off (simple and correct; an event per
// bucket would let the compute stream run on, left for the GPU work).
//
// Thread safety: BeginStep, OnGradsReady and Finish are called by the training thread;
// the communication thread is internal. The communicator must not be used by anyone
// else between BeginStep and Finish. Destruction joins the thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colossus/comm/communicator.h"
#include "colossus/model.h"

namespace colossus::parallel {

inline constexpr size_t kDefaultBucketBytes = size_t{25} << 20;  // 25 MiB

struct GradBucket {
  size_t first_param = 0;  // parameters [first_param, end_param) of model.params()
  size_t end_param = 0;
  int64_t offset = 0;      // first element in the flat gradient buffer
  int64_t numel = 0;       // elements, gaps between its parameters included
};

// The buckets for `model` (see above). REQUIRES: bucket_bytes >= 1.
std::vector<GradBucket> PlanGradBuckets(const GPT& model, size_t bucket_bytes);

class GradReducer {
 public:
  // `model` and `comm` must outlive the reducer. InvalidArgument for bucket_bytes 0.
  static absl::StatusOr<std::unique_ptr<GradReducer>> Create(GPT* model,
                                                             comm::Communicator* comm,
                                                             size_t bucket_bytes);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Arms the reducer for one step's last backward. REQUIRES: no step in flight.
  void BeginStep();
  // Parameters [first, end) have final gradients (GPT::Backward's hook). Launches every
  // bucket that is now complete and whose predecessors are launched. Each parameter
  // must be reported at most once per step.
  void OnGradsReady(size_t first, size_t end);
  // A GradsReadyFn bound to this reducer, for GPT::Backward.
  GradsReadyFn Hook() {
    return [this](size_t first, size_t end) { OnGradsReady(first, end); };
  }
  // Launches the buckets not yet launched, waits for all of them; the first error of
  // the step (naming the bucket), if any. Afterwards the gradients hold the sum over
  // ranks. Ends the step.
  absl::Status Finish();

  const std::vector<GradBucket>& buckets() const { return buckets_; }

  // What the last step did, for tests and logs.
  struct StepReport {
    int launched_by_hook = 0;    // buckets handed off from inside backward
    int launched_by_finish = 0;  // buckets handed off by Finish
    // For each bucket in launch order, how many OnGradsReady calls had been made when
    // it was launched (1 = after the first layer's gradients; Finish counts as one
    // more than the calls made).
    std::vector<int> launched_after_calls;
    double comm_seconds = 0;  // the communication thread's time in all-reduces
    double wait_seconds = 0;  // the training thread's time blocked in Finish (exposed)
  };
  const StepReport& last_step() const { return report_; }

 private:
  GradReducer(GPT* model, comm::Communicator* comm, std::vector<GradBucket> buckets);
  void LaunchRange(size_t begin, size_t end);  // main thread: hands buckets off
  void CommLoop();     // communication thread

  GPT* const model_;
  comm::Communicator* const comm_;
  const std::vector<GradBucket> buckets_;
  std::vector<size_t> bucket_of_param_;
  std::vector<int> pending_;       // per bucket: parameters not yet final this step
  std::vector<bool> reported_;     // per parameter, this step
  size_t next_launch_ = 0;         // first bucket not yet launched
  bool in_step_ = false;
  int calls_ = 0;
  StepReport report_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> queue_;       // launched buckets for the thread; guarded by mu_
  size_t completed_ = 0;           // buckets reduced (or skipped after an error); mu_
  absl::Status error_;             // first failure of the step; mu_
  double comm_seconds_ = 0;        // this step's all-reduce time; mu_
  bool stop_ = false;              // mu_
  std::thread thread_;
};

}  // namespace colossus::parallel
