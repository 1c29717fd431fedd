#include "colossus/parallel/grad_reducer.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_format.h"
#include "colossus/check.h"

namespace colossus::parallel {
namespace {

int64_t OffsetOf(const GPT& model, const Tensor& t) {
  return (static_cast<const char*>(t.data) - static_cast<const char*>(model.flat_grads().data)) /
         4;
}

}  // namespace

std::vector<GradBucket> PlanGradBuckets(const GPT& model, size_t bucket_bytes) {
  CHECK(bucket_bytes >= 1) << "PlanGradBuckets: bucket_bytes must be >= 1";
  const std::vector<Tensor>& grads = model.grads();
  std::vector<GradBucket> buckets;
  size_t end = grads.size();  // the open bucket is [i, end)
  size_t bytes = 0;
  auto close = [&](size_t first) {
    GradBucket b;
    b.first_param = first;
    b.end_param = end;
    b.offset = OffsetOf(model, grads[first]);
    b.numel = OffsetOf(model, grads[end - 1]) + grads[end - 1].numel() - b.offset;
    buckets.push_back(b);
    end = first;
    bytes = 0;
  };
  for (size_t i = grads.size(); i-- > 0;) {
    bytes += grads[i].bytes();
    if (bytes >= bucket_bytes) close(i);
  }
  if (end > 0) close(0);
  return buckets;
}

absl::StatusOr<std::unique_ptr<GradReducer>> GradReducer::Create(GPT* model,
                                                                 comm::Communicator* comm,
                                                                 size_t bucket_bytes) {
  CHECK(model != nullptr && comm != nullptr);
  if (bucket_bytes == 0) {
    return absl::InvalidArgumentError("parallel.bucket_mb: the bucket size must be > 0 bytes");
  }
  return std::unique_ptr<GradReducer>(
      new GradReducer(model, comm, PlanGradBuckets(*model, bucket_bytes)));
}

GradReducer::GradReducer(GPT* model, comm::Communicator* comm, std::vector<GradBucket> buckets)
    : model_(model), comm_(comm), buckets_(std::move(buckets)) {
  bucket_of_param_.assign(model_->params().size(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t p = buckets_[b].first_param; p < buckets_[b].end_param; ++p) bucket_of_param_[p] = b;
  }
  pending_.assign(buckets_.size(), 0);
  reported_.assign(model_->params().size(), false);
  thread_ = std::thread([this] { CommLoop(); });
}

GradReducer::~GradReducer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void GradReducer::BeginStep() {
  CHECK(!in_step_) << "GradReducer::BeginStep: the previous step was not finished";
  in_step_ = true;
  next_launch_ = 0;
  calls_ = 0;
  report_ = StepReport();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    pending_[b] = static_cast<int>(buckets_[b].end_param - buckets_[b].first_param);
  }
  std::fill(reported_.begin(), reported_.end(), false);
  std::lock_guard<std::mutex> lock(mu_);
  completed_ = 0;
  error_ = absl::OkStatus();
  comm_seconds_ = 0;
}

void GradReducer::OnGradsReady(size_t first, size_t end) {
  CHECK(in_step_) << "GradReducer::OnGradsReady outside BeginStep/Finish";
  CHECK(first <= end && end <= reported_.size())
      << "GradReducer::OnGradsReady [" << first << ", " << end << ") of " << reported_.size();
  ++calls_;
  for (size_t p = first; p < end; ++p) {
    CHECK(!reported_[p]) << "GradReducer: parameter " << model_->params()[p].name
                         << " reported final twice in one step";
    reported_[p] = true;
    --pending_[bucket_of_param_[p]];
  }
  const size_t before = next_launch_;
  while (next_launch_ < buckets_.size() && pending_[next_launch_] == 0) ++next_launch_;
  if (next_launch_ > before) {
    report_.launched_by_hook += static_cast<int>(next_launch_ - before);
    LaunchRange(before, next_launch_);
  }
}

void GradReducer::LaunchRange(size_t begin, size_t end) {
  // The communicator reads the gradients from another thread (and, on CUDA, another
  // stream): what the backend has queued for them must be done first.
  if (model_->backend()->kind() != kernels::DeviceKind::kCPU) model_->backend()->Synchronize();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t b = begin; b < end; ++b) {
      queue_.push_back(b);
      report_.launched_after_calls.push_back(calls_);
    }
  }
  cv_.notify_all();
}

absl::Status GradReducer::Finish() {
  CHECK(in_step_) << "GradReducer::Finish without BeginStep";
  ++calls_;
  if (next_launch_ < buckets_.size()) {
    report_.launched_by_finish = static_cast<int>(buckets_.size() - next_launch_);
    LaunchRange(next_launch_, buckets_.size());
    next_launch_ = buckets_.size();
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return completed_ == buckets_.size(); });
  report_.wait_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report_.comm_seconds = comm_seconds_;
  in_step_ = false;
  return error_;
}

void GradReducer::CommLoop() {
  float* const base = model_->flat_grads().as<float>();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left
    const size_t b = queue_.front();
    queue_.pop_front();
    const bool failed = !error_.ok();
    lock.unlock();
    absl::Status s;
    const auto t0 = std::chrono::steady_clock::now();
    // After a failure the communicator is broken: the remaining buckets are only
    // counted, so that Finish returns the first error instead of a pile of echoes.
    if (!failed) {
      const GradBucket& g = buckets_[b];
      float* data = base + g.offset;
      s = comm_->AllReduce(data, data, static_cast<size_t>(g.numel), comm::DataType::kF32,
                           comm::ReduceOp::kSum)
              .Wait();
      if (!s.ok()) {
        s = absl::Status(s.code(), absl::StrFormat(
                                       "gradient bucket %d of %d (parameters %s .. %s, %d "
                                       "elements): %s",
                                       b, buckets_.size(), model_->params()[g.first_param].name,
                                       model_->params()[g.end_param - 1].name, g.numel,
                                       s.message()));
      }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lock.lock();
    comm_seconds_ += seconds;
    if (!s.ok() && error_.ok()) error_ = s;
    ++completed_;
    if (completed_ == buckets_.size()) cv_.notify_all();
  }
}

}  // namespace colossus::parallel
