// Helpers for driving JobState with scripted events: a journal in memory, a recording
// command sink, request builders and result holders.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "colossus/launcher/job_state.h"

namespace colossus::launcher::testing {

// A journal in memory; can be told to fail.
class MemoryJournal : public JournalSink {
 public:
  absl::Status Append(const v1::JournalRecord& record) override {
    absl::MutexLock lock(&mu_);
    if (!fail_.ok()) return fail_;
    records_.push_back(record);
    return absl::OkStatus();
  }
  std::vector<v1::JournalRecord> records() const {
    absl::MutexLock lock(&mu_);
    return records_;
  }
  void set_fail(absl::Status status) {
    absl::MutexLock lock(&mu_);
    fail_ = std::move(status);
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::JournalRecord> records_;
  absl::Status fail_;
};

// Records the commands and the close status of one health stream.
class RecordingSink : public CommandSink {
 public:
  void Send(const v1::Command& command) override {
    absl::MutexLock lock(&mu_);
    commands_.push_back(command);
  }
  void Close(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      closed_ = true;
      close_status_ = status;
    }
  }
  std::vector<v1::Command> commands() const {
    absl::MutexLock lock(&mu_);
    return commands_;
  }
  bool closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  absl::Status close_status() const {
    absl::MutexLock lock(&mu_);
    return close_status_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::Command> commands_;
  bool closed_ = false;
  absl::Status close_status_;
};

// Holds the outcome of a held call; shared so that the callback may outlive the test's
// frame without dangling.
template <class T>
struct Outcome {
  std::optional<absl::StatusOr<T>> result;
  bool done() const { return result.has_value(); }
  const T& value() const { return **result; }
  absl::Status status() const { return result->status(); }
};

inline v1::JoinRequest MakeJoin(const std::string& node, int32_t local_world_size,
                                int64_t generation = 0, const std::string& incarnation = "inc-1") {
  v1::JoinRequest r;
  r.mutable_header()->set_job_id("job");
  r.mutable_header()->set_generation(generation);
  r.set_node_id(node);
  r.set_address(node + ".example:29500");
  r.set_local_world_size(local_world_size);
  r.set_incarnation(incarnation);
  return r;
}

inline v1::RankHealth MakeRank(int32_t local_rank, v1::RankState state, int64_t step = -1) {
  v1::RankHealth h;
  h.set_local_rank(local_rank);
  h.set_state(state);
  h.set_step(step);
  return h;
}

inline v1::NodeHealth MakeHealth(const std::string& node, int64_t generation,
                                 std::vector<v1::RankHealth> ranks = {}) {
  v1::NodeHealth h;
  h.mutable_header()->set_job_id("job");
  h.mutable_header()->set_generation(generation);
  h.set_node_id(node);
  for (auto& r : ranks) *h.add_ranks() = r;
  return h;
}

inline v1::ShardReport MakeShard(int64_t generation, int64_t step, int32_t rank,
                                 int32_t num_shards, const std::string& dir = "/ckpt/step") {
  v1::ShardReport r;
  r.mutable_header()->set_job_id("job");
  r.mutable_header()->set_generation(generation);
  r.set_step(step);
  r.set_rank(rank);
  r.set_num_shards(num_shards);
  r.set_directory(dir);
  r.set_path(dir + "/shard-" + std::to_string(rank));
  r.set_bytes(1024);
  r.set_checksum("0123456789abcdef");
  return r;
}

// Join that records its outcome in *out.
inline uint64_t JoinInto(JobState& state, const v1::JoinRequest& request, absl::Time now,
                         std::shared_ptr<Outcome<v1::JoinResponse>> out) {
  return state.Join(request, now, [out](absl::StatusOr<v1::JoinResponse> r) {
    out->result = std::move(r);
  });
}

inline absl::StatusOr<v1::ShardAck> Report(JobState& state, const v1::ShardReport& report,
                                           absl::Time now) {
  std::optional<absl::StatusOr<v1::ShardAck>> out;
  state.ReportShard(report, now, [&out](absl::StatusOr<v1::ShardAck> r) { out = std::move(r); });
  // Single-threaded: the report was journaled and answered before ReportShard returned.
  if (!out.has_value()) return absl::InternalError("ReportShard did not answer synchronously");
  return *out;
}

inline absl::Time T0() { return absl::FromUnixSeconds(1'700'000'000); }

}  // namespace colossus::launcher::testing
