// The public face of every backend: argument checks and sequence numbers live here
// once, so Gloo and NCCL cannot drift apart on what they accept or how they count.
#include "colossus/comm/communicator.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"

namespace colossus::comm {

Communicator::Communicator(int rank, int size, std::string name, absl::Duration default_timeout)
    : rank_(rank), size_(size), name_(std::move(name)), default_timeout_(default_timeout) {
  CHECK(size_ >= 1 && rank_ >= 0 && rank_ < size_) << "rank " << rank_ << " of " << size_;
  CHECK(default_timeout_ > absl::ZeroDuration()) << "non-positive default timeout";
}

Communicator::~Communicator() = default;

uint64_t Communicator::last_seq() const { return seq_.load(); }

absl::Status Communicator::Validate(const char* op, size_t count, size_t blocks,
                                    DataType dtype) const {
  if (!IsValid(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(op, " on group '", name_, "' rank ", rank_,
                                                   ": invalid dtype ", static_cast<int>(dtype)));
  }
  // Byte sizes are computed in size_t by the backends; refuse counts that overflow.
  if (count > std::numeric_limits<size_t>::max() / DataTypeSize(dtype) / blocks) {
    return absl::InvalidArgumentError(absl::StrCat(op, " on group '", name_, "' rank ", rank_,
                                                   ": count ", count, " overflows"));
  }
  return absl::OkStatus();
}

Communicator::Call Communicator::NextCollective(const char* op, const OpOptions& options) {
  const absl::Duration t = options.timeout > absl::ZeroDuration() ? options.timeout : default_timeout_;
  return Call{op, seq_.fetch_add(1) + 1, t, options.stream};
}

Communicator::Call Communicator::PointToPoint(const char* op, const OpOptions& options) const {
  const absl::Duration t = options.timeout > absl::ZeroDuration() ? options.timeout : default_timeout_;
  return Call{op, 0, t, options.stream};
}

namespace {

absl::Status NullBuffer(const char* op, const std::string& group, int rank, const char* which,
                        size_t count) {
  return absl::InvalidArgumentError(absl::StrCat(op, " on group '", group, "' rank ", rank,
                                                 ": null ", which, " buffer for ", count,
                                                 " elements"));
}

}  // namespace

Work Communicator::AllReduce(const void* send, void* recv, size_t count, DataType dtype,
                             ReduceOp op, const OpOptions& options) {
  constexpr const char* kOp = "all_reduce";
  if (absl::Status s = Validate(kOp, count, 1, dtype); !s.ok()) return Work::Completed(s);
  if (!IsValid(op)) {
    return Work::Completed(absl::InvalidArgumentError(
        absl::StrCat(kOp, " on group '", name_, "' rank ", rank_, ": invalid reduce op")));
  }
  if (count > 0 && (send == nullptr || recv == nullptr)) {
    return Work::Completed(NullBuffer(kOp, name_, rank_, send ? "recv" : "send", count));
  }
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoAllReduce(NextCollective(kOp, options), send, recv, count, dtype, op);
}

Work Communicator::ReduceScatter(const void* send, void* recv, size_t recv_count, DataType dtype,
                                 ReduceOp op, const OpOptions& options) {
  constexpr const char* kOp = "reduce_scatter";
  if (absl::Status s = Validate(kOp, recv_count, size_, dtype); !s.ok()) return Work::Completed(s);
  if (!IsValid(op)) {
    return Work::Completed(absl::InvalidArgumentError(
        absl::StrCat(kOp, " on group '", name_, "' rank ", rank_, ": invalid reduce op")));
  }
  if (recv_count > 0 && (send == nullptr || recv == nullptr)) {
    return Work::Completed(NullBuffer(kOp, name_, rank_, send ? "recv" : "send", recv_count));
  }
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoReduceScatter(NextCollective(kOp, options), send, recv, recv_count, dtype, op);
}

Work Communicator::AllGather(const void* send, void* recv, size_t send_count, DataType dtype,
                             const OpOptions& options) {
  constexpr const char* kOp = "all_gather";
  if (absl::Status s = Validate(kOp, send_count, size_, dtype); !s.ok()) return Work::Completed(s);
  if (send_count > 0 && (send == nullptr || recv == nullptr)) {
    return Work::Completed(NullBuffer(kOp, name_, rank_, send ? "recv" : "send", send_count));
  }
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoAllGather(NextCollective(kOp, options), send, recv, send_count, dtype);
}

Work Communicator::Broadcast(const void* send, void* recv, size_t count, DataType dtype, int root,
                             const OpOptions& options) {
  constexpr const char* kOp = "broadcast";
  if (absl::Status s = Validate(kOp, count, 1, dtype); !s.ok()) return Work::Completed(s);
  if (root < 0 || root >= size_) {
    return Work::Completed(absl::InvalidArgumentError(absl::StrCat(
        kOp, " on group '", name_, "' rank ", rank_, ": root ", root, " not in [0, ", size_, ")")));
  }
  if (count > 0 && recv == nullptr) return Work::Completed(NullBuffer(kOp, name_, rank_, "recv", count));
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoBroadcast(NextCollective(kOp, options), rank_ == root ? send : nullptr, recv, count,
                     dtype, root);
}

Work Communicator::AllToAll(const void* send, void* recv, size_t count, DataType dtype,
                            const OpOptions& options) {
  constexpr const char* kOp = "all_to_all";
  if (absl::Status s = Validate(kOp, count, size_, dtype); !s.ok()) return Work::Completed(s);
  if (count > 0 && (send == nullptr || recv == nullptr)) {
    return Work::Completed(NullBuffer(kOp, name_, rank_, send ? "recv" : "send", count));
  }
  if (count > 0 && send == recv) {
    return Work::Completed(absl::InvalidArgumentError(absl::StrCat(
        kOp, " on group '", name_, "' rank ", rank_, ": in place is not supported")));
  }
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoAllToAll(NextCollective(kOp, options), send, recv, count, dtype);
}

Work Communicator::Barrier(const OpOptions& options) {
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoBarrier(NextCollective("barrier", options));
}

Work Communicator::Send(const void* buf, size_t count, DataType dtype, int peer,
                        const OpOptions& options) {
  constexpr const char* kOp = "send";
  if (absl::Status s = Validate(kOp, count, 1, dtype); !s.ok()) return Work::Completed(s);
  if (peer < 0 || peer >= size_ || peer == rank_) {
    return Work::Completed(absl::InvalidArgumentError(absl::StrCat(
        kOp, " on group '", name_, "' rank ", rank_, ": invalid peer ", peer)));
  }
  if (count > 0 && buf == nullptr) return Work::Completed(NullBuffer(kOp, name_, rank_, "send", count));
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoSend(PointToPoint(kOp, options), buf, count, dtype, peer);
}

Work Communicator::Recv(void* buf, size_t count, DataType dtype, int peer,
                        const OpOptions& options) {
  constexpr const char* kOp = "recv";
  if (absl::Status s = Validate(kOp, count, 1, dtype); !s.ok()) return Work::Completed(s);
  if (peer < 0 || peer >= size_ || peer == rank_) {
    return Work::Completed(absl::InvalidArgumentError(absl::StrCat(
        kOp, " on group '", name_, "' rank ", rank_, ": invalid peer ", peer)));
  }
  if (count > 0 && buf == nullptr) return Work::Completed(NullBuffer(kOp, name_, rank_, "recv", count));
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoRecv(PointToPoint(kOp, options), buf, count, dtype, peer);
}

absl::StatusOr<std::unique_ptr<Communicator>> Communicator::Split(int color, int key,
                                                                  std::string name) {
  if (color < 0 && color != kSplitNoColor) {
    return absl::InvalidArgumentError(absl::StrCat("split on group '", name_, "' rank ", rank_,
                                                   ": negative color ", color,
                                                   " (use kSplitNoColor to opt out)"));
  }
  if (name.empty() && color >= 0) name = absl::StrCat(name_, ".", color);
  std::lock_guard<std::mutex> lock(op_mu_);
  return DoSplit(NextCollective("split", OpOptions{}), color, key, std::move(name));
}

}  // namespace colossus::comm
