// NcclState (the shared communicator state and its failure path) and NcclWork.
#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nccl_backend/nccl_check.h"
#include "nccl_backend/nccl_communicator.h"

namespace colossus::comm::internal {

NcclState::NcclState(std::shared_ptr<Store> store_in, int rank_in, int size_in,
                     std::string name_in, int device_in, absl::Duration default_timeout_in)
    : store(std::move(store_in)),
      rank(rank_in),
      size(size_in),
      name(std::move(name_in)),
      device(device_in),
      default_timeout(default_timeout_in),
      board(store, rank_in, size_in) {}

NcclState::~NcclState() {
  (void)cudaSetDevice(device);
  {
    std::lock_guard<std::mutex> lock(nccl_mu);
    if (comm != nullptr) {
      // Finalize flushes outstanding operations; on a healthy group it completes once
      // the peers finalise too. Bounded: a peer that never does makes us abort.
      absl::Status s = COLOSSUS_NCCL_STATUS(ncclCommFinalize(comm));
      if (s.ok()) {
        const absl::Time deadline = absl::Now() + default_timeout;
        ncclResult_t r = ncclInProgress;
        while (absl::Now() < deadline) {
          if (ncclCommGetAsyncError(comm, &r) != ncclSuccess || r != ncclInProgress) break;
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        s = r == ncclSuccess ? COLOSSUS_NCCL_STATUS(ncclCommDestroy(comm))
                             : absl::InternalError("finalize did not complete");
      }
      if (!s.ok()) (void)ncclCommAbort(comm);
      comm = nullptr;
    }
  }
  if (scratch != nullptr) (void)cudaFree(scratch);
  if (stream != nullptr) (void)cudaStreamDestroy(stream);
}

absl::Status NcclState::Health() const {
  std::lock_guard<std::mutex> lock(health_mu_);
  return health_;
}

void NcclState::AbortLocked() {
  if (comm == nullptr) return;
  // ncclCommAbort returns without waiting for peers; kernels of this communicator still
  // on the device are stopped.
  (void)ncclCommAbort(comm);
  comm = nullptr;
}

void NcclState::Break(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    if (health_.ok()) health_ = status;
  }
  std::lock_guard<std::mutex> lock(nccl_mu);
  AbortLocked();
}

ncclResult_t NcclState::AsyncError() {
  std::lock_guard<std::mutex> lock(nccl_mu);
  if (comm == nullptr) return ncclSuccess;
  ncclResult_t r = ncclSuccess;
  const ncclResult_t q = ncclCommGetAsyncError(comm, &r);
  return q != ncclSuccess ? q : r;
}

absl::Status NcclState::Fail(const char* op, uint64_t seq, const std::string& where,
                             absl::StatusCode code, const std::string& message,
                             absl::Duration elapsed, absl::Duration timeout) {
  std::string root_cause;
  if (Health().code() == absl::StatusCode::kAborted) {
    code = absl::StatusCode::kAborted;  // Abort() from another thread caused this
  } else if (seq != 0) {
    // Record before aborting: a peer that then sees a remote error finds the root
    // cause on the board.
    std::optional<ArrivalBoard::Failure> first = board.RecordFailure({rank, seq, code, message});
    if (first.has_value() && first->rank != rank) {
      if (first->seq == seq) code = first->code;
      root_cause = absl::StrCat("; first failure in the group: rank ", first->rank, " at seq ",
                                first->seq, ": ", absl::StatusCodeToString(first->code), ": ",
                                first->message);
    }
  }
  Break(absl::Status(code, absl::StrCat(where, " failed: ", message)));
  std::string missing;
  if (seq != 0) missing = absl::StrCat("; ", board.DescribeMissing(seq, op));
  return absl::Status(code, absl::StrCat(where, " failed after ", absl::FormatDuration(elapsed),
                                         " (timeout ", absl::FormatDuration(timeout), "): ",
                                         message, missing, root_cause));
}

absl::Status WaitForNcclReady(std::mutex& mu, const ncclComm_t& comm, absl::Time deadline,
                              const char* what) {
  for (int i = 0;; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (comm == nullptr) return absl::AbortedError(absl::StrCat(what, ": aborted"));
      ncclResult_t r = ncclInProgress;
      COLOSSUS_NCCL_RETURN_IF_ERROR(ncclCommGetAsyncError(comm, &r));
      if (r == ncclSuccess) return absl::OkStatus();
      if (r != ncclInProgress) {
        return NcclStatus(r, "ncclCommGetAsyncError", __FILE__, __LINE__);
      }
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(what, ": still in progress at the deadline"));
    }
    if (i < 100) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

namespace {

class NcclWork final : public WorkState {
 public:
  NcclWork(std::shared_ptr<NcclState> state, const char* op, uint64_t seq, std::string where,
           cudaEvent_t event, absl::Duration timeout)
      : state_(std::move(state)),
        op_(op),
        seq_(seq),
        where_(std::move(where)),
        event_(event),
        start_(absl::Now()),
        timeout_(timeout) {}

  ~NcclWork() override {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
  }

  absl::Status Wait(absl::Duration timeout) override {
    std::lock_guard<std::mutex> lock(mu_);
    const absl::Time wait_deadline =
        timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
    for (int i = 0;; ++i) {
      if (result_.has_value()) return *result_;
      if (Poll()) continue;
      const absl::Time now = absl::Now();
      if (now >= start_ + timeout_) {
        // The watchdog: this operation ran past its own timeout.
        result_ = state_->Fail(op_, seq_, where_, absl::StatusCode::kDeadlineExceeded,
                               "the operation did not complete on the device", now - start_,
                               timeout_);
        continue;
      }
      if (now >= wait_deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            where_, ": still running after waiting ", absl::FormatDuration(timeout),
            " (its own timeout is ", absl::FormatDuration(timeout_), ")"));
      }
      // Spin briefly (short collectives finish in microseconds), then back off.
      if (i < 1000) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
  }

  bool Done() override {
    std::lock_guard<std::mutex> lock(mu_);
    return result_.has_value() || Poll();
  }

 private:
  // One look at the event and the communicator; sets result_ and returns true once
  // the operation has finished or failed. REQUIRES: mu_ held.
  bool Poll() {
    if (result_.has_value()) return true;
    const cudaError_t e = cudaEventQuery(event_);
    if (e == cudaSuccess) {
      result_ = absl::OkStatus();
      return true;
    }
    if (e != cudaErrorNotReady) {
      result_ = state_->Fail(op_, seq_, where_, absl::StatusCode::kInternal,
                             std::string(CudaStatus(e, "cudaEventQuery", __FILE__, __LINE__)
                                             .message()),
                             absl::Now() - start_, timeout_);
      return true;
    }
    if (absl::Status h = state_->Health(); !h.ok()) {
      // Aborted (or broken by another operation): the event may never fire.
      result_ = absl::Status(h.code(), absl::StrCat(where_, ": ", h.message()));
      return true;
    }
    const ncclResult_t r = state_->AsyncError();
    if (r != ncclSuccess && r != ncclInProgress) {
      const absl::Status s = NcclStatus(r, "ncclCommGetAsyncError", __FILE__, __LINE__);
      result_ = state_->Fail(op_, seq_, where_, s.code(), std::string(s.message()),
                             absl::Now() - start_, timeout_);
      return true;
    }
    return false;
  }

  const std::shared_ptr<NcclState> state_;
  const char* const op_;
  const uint64_t seq_;
  const std::string where_;
  cudaEvent_t event_;
  const absl::Time start_;
  const absl::Duration timeout_;
  std::mutex mu_;
  std::optional<absl::Status> result_;  // guarded by mu_
};

}  // namespace

std::shared_ptr<WorkState> MakeNcclWork(std::shared_ptr<NcclState> state, const char* op,
                                        uint64_t seq, std::string where, cudaEvent_t event,
                                        absl::Duration timeout) {
  return std::make_shared<NcclWork>(std::move(state), op, seq, std::move(where), event, timeout);
}

}  // namespace colossus::comm::internal
