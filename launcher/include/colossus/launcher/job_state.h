// JobState: the job's lifecycle as an explicit state machine, free of gRPC.
//
// The gRPC service (launcher/coordinator/) turns each RPC into one call here; tests drive
// it with scripted events and a fake clock: every method takes `now`, and Tick(now) is
// what makes time pass (settle, join and node timeouts, hang detection).
//
// Phases (proto JobPhase) and the events that move between them:
//
//   WAITING     gathering nodes for generation 1 (a fresh job). Joins are held.
//               -> RUNNING when the generation forms: max_nodes joined, or at least
//                  min_nodes joined and `settle` has passed since the last Join.
//   RUNNING     generation g is formed; its members beat on their health streams.
//               -> RESTARTING on a failure while restarts remain: a rank FAILED, a node
//                  silent past node_timeout (dead), a RUNNING rank whose step has not
//                  advanced for hang_timeout (stuck), or a member's Leave (which costs no
//                  restart). The generation moves to g+1 at once (g is fenced from then on),
//                  every live member gets RESTART(g+1) on its stream, GENERATION keys are
//                  dropped and partial checkpoint steps forgotten.
//               -> FAILED on a failure with the budget (max_restarts) spent.
//               -> SUCCEEDED when every rank of g reported SUCCEEDED.
//   RESTARTING  re-forming generation g+1 from the survivors and any new nodes. A
//               failure of a generation in which no rank completed a step (a crash
//               loop: a bad flag, a broken node, storage down) first waits the restart
//               backoff, doubled for each such failure in a row (at most 16x); a
//               generation that made progress restarts at once, since every second of
//               waiting is paid by every GPU. Then it forms at
//               once when every survivor has re-joined and at least min_nodes are in, or
//               max_nodes are in; otherwise as in WAITING (min_nodes and settle), but only
//               once the missing survivors have had node_timeout to come back. Elastic
//               (min_nodes < max_nodes): fewer nodes than before; a job with min_nodes ==
//               max_nodes waits for the full count.
//   SUCCEEDED, FAILED, STOPPED (StopJob)
//               final. Every agent with a stream gets EXIT; held Joins fail; the store
//               closes; a JobEndRecord is journaled.
//
// Rendezvous: the members of a generation are ordered by node_id, node_rank is the index
// in that order and ranks are contiguous per node (first_rank = the sum of the
// local_world_size of the nodes before it). A node that joins while a generation runs
// waits for the next one. A node id that is a live member, or already waiting with
// another incarnation, is refused with ALREADY_EXISTS (the same incarnation replaces its
// own earlier held Join: a retry). When more nodes wait than max_nodes, the survivors of
// the last generation go first, then the others in join order.
//
// Fencing: the current generation is the one running or being formed. Health streams,
// shard reports (and the store, JobStore) refuse an older generation with
// FAILED_PRECONDITION naming both numbers.
//
// Checkpoint invalidation: when the workers of a generation cannot load the latest
// committed step (a corrupt shard) and all fall back to an older one, rank 0 says so
// (InvalidateCheckpoints); the newer steps are journaled as invalid and the older one is
// the latest again, for status, events, later restarts and replays.
//
// Checkpoint commit: shard reports are journaled (in batches: reports that arrive while
// an append is in progress share the next append) before they count and before they are
// acknowledged; when every shard of a step is in, a commit record is appended and only
// then does the step become the latest. Reports only count in the formed current
// generation; a step whose shards are not all in is never latest.
//
// Journal replay (Restore): the last GenerationRecord decides where the job stands: with
// nodes, generation g is RUNNING again with those members, each given node_timeout from
// `now` to reconnect its health stream (re-adopted: no restart); without nodes (a restart
// was under way) g is RESTARTING. Commits restore the latest checkpoint, shard batches of
// the restored generation restore partial steps, and a JobEndRecord restores the end.
//
// Thread safety: every method is thread-safe (one mutex). Callbacks (JoinDone, ShardDone,
// CommandSink, the store's and event subscribers') are never invoked under it: they are
// collected and run after it is released, on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.pb.h"
#include "colossus/launcher/job_deferred.h"
#include "colossus/launcher/job_events.h"
#include "colossus/launcher/job_store.h"

namespace colossus::launcher {

namespace v1 = ::colossus::coordinator::v1;

struct JobConfig {
  std::string job_id;
  int32_t min_nodes = 1;
  int32_t max_nodes = 1;
  absl::Duration settle = absl::ZeroDuration();          // quiet time after the last Join
  absl::Duration join_timeout = absl::Minutes(10);       // a held Join's default timeout
  absl::Duration heartbeat_interval = absl::Seconds(1);  // told to agents
  absl::Duration node_timeout = absl::Seconds(30);       // silent this long: dead
  absl::Duration hang_timeout = absl::Minutes(10);       // step not advancing: stuck
  int32_t max_restarts = 3;
  // Wait before re-forming after a generation that failed without completing a step
  // (doubled per such failure in a row, capped at 16x); zero: never wait.
  absl::Duration restart_backoff = absl::ZeroDuration();
  absl::Duration stop_grace = absl::Seconds(10);         // grace_ms of STOP/RESTART/EXIT
  int32_t max_local_world_size = 4096;
  // Nodes allowed to wait for a generation at once, beyond max_nodes.
  int32_t max_extra_waiting_nodes = 4096;
  // Incomplete checkpoint steps kept at once (the oldest is forgotten beyond).
  int32_t max_pending_steps = 16;
};

// InvalidArgument naming the field when a config cannot work (min > max, zero timeouts).
absl::Status ValidateJobConfig(const JobConfig& config);

// SUCCEEDED, FAILED or STOPPED.
inline bool IsFinalPhase(v1::JobPhase phase) {
  return phase == v1::JOB_PHASE_SUCCEEDED || phase == v1::JOB_PHASE_FAILED ||
         phase == v1::JOB_PHASE_STOPPED;
}

// Where JobState makes its records durable (the coordinator's Journal, or a test's list).
class JournalSink {
 public:
  virtual ~JournalSink() = default;
  // OK only once the record is on stable storage.
  virtual absl::Status Append(const v1::JournalRecord& record) = 0;
};

// One node's health stream, as JobState sees it.
class CommandSink {
 public:
  virtual ~CommandSink() = default;
  // Queues a command for the agent; never blocks.
  virtual void Send(const v1::Command& command) = 0;
  // Ends the stream with `status` after the queued commands (idempotent: the first wins).
  virtual void Close(const absl::Status& status) = 0;
};

// Figures for /metrics.
struct JobMetrics {
  int64_t generation = 0;
  v1::JobPhase phase = v1::JOB_PHASE_UNSPECIFIED;
  int32_t restarts = 0;
  int32_t nodes_joined = 0;   // members of the formed generation, or waiting nodes
  int32_t nodes_alive = 0;
  int32_t nodes_waiting = 0;  // held Joins
  int32_t world_size = 0;
  double max_heartbeat_lag_s = 0;  // over live members
  int64_t commits = 0;
  int64_t latest_step = 0;
};

class JobState {
 public:
  using JoinDone = std::function<void(absl::StatusOr<v1::JoinResponse>)>;
  using ShardDone = std::function<void(absl::StatusOr<v1::ShardAck>)>;

  // journal, store and events may be null (tests); they must outlive this object.
  JobState(JobConfig config, JournalSink* journal, JobStore* store, JobEvents* events);
  ~JobState();

  JobState(const JobState&) = delete;
  JobState& operator=(const JobState&) = delete;

  // Replays journal records (see the header comment). Call once, before anything else.
  // Returns a one-line summary of where the job stands.
  // relaunch_ended: a job whose journal ends with its end (succeeded, failed, stopped) is
  // launched again instead of reporting that end: a fresh generation (journaled, so a
  // crash before it forms replays as a live job), a fresh restart budget, and the latest
  // committed checkpoint kept for the workers to resume from. colossus-launch asks for it
  // (running a job's command again continues it); a coordinator restarted after a crash
  // does not, and reports the end it recorded.
  absl::StatusOr<std::string> Restore(const std::vector<v1::JournalRecord>& records,
                                      absl::Time now, bool relaunch_ended = false);

  // ---- rendezvous
  // Holds the Join until the node's generation forms (done gets the assignment), the
  // timeout (request's timeout_ms, or join_timeout) passes, or the job ends. `done` is
  // called exactly once unless CancelJoin(ticket) returns true; it may be called before
  // Join returns. Returns the ticket (0 when done was already called).
  uint64_t Join(const v1::JoinRequest& request, absl::Time now, JoinDone done);
  // The caller of a held Join went away: removes it (it no longer counts toward the
  // generation). True when removed; false when it completed or is completing.
  bool CancelJoin(uint64_t ticket, absl::Time now);
  absl::Status Leave(const v1::LeaveRequest& request, absl::Time now);

  // ---- health
  // The first message of a node's health stream: the node must be a live member of the
  // current, formed generation. A newer stream of a node replaces (closes) its older one.
  // After the job ended the stream gets EXIT and is closed. Returns the stream's id.
  absl::StatusOr<uint64_t> OpenHealthStream(const v1::NodeHealth& first,
                                            std::shared_ptr<CommandSink> sink, absl::Time now);
  // A later message. An error ends the stream (fenced, replaced, malformed).
  absl::Status Beat(uint64_t stream_id, const v1::NodeHealth& message, absl::Time now);
  // The stream is gone (the node stays a member until its node_timeout).
  void CloseHealthStream(uint64_t stream_id);

  // ---- checkpoints
  // `done` gets the ack once the report is durable (and the step committed when this
  // report completed it), or the refusal. May be called before ReportShard returns, or
  // on another thread that is appending to the journal at the time.
  void ReportShard(const v1::ShardReport& report, absl::Time now, ShardDone done);
  v1::CheckpointRef LatestCheckpoint() const;
  // Rank 0 of the current generation says its workers resumed from an older step than
  // the latest (the newer ones do not load): every committed step after
  // request.resumed().step() becomes invalid. Journaled first (a replay keeps them
  // invalid), then the resumed step is the latest, the steps are listed in
  // JobStatus.invalid_checkpoints and a CHECKPOINT_INVALIDATED event names the newest,
  // its reason and the step now latest. A later save of an invalidated step commits as
  // a new step. Returns the latest after; nothing to invalidate (a repeat) returns it
  // unchanged. FAILED_PRECONDITION for another generation or an ended job,
  // INVALID_ARGUMENT for a resumed step newer than the latest or negative; the journal's
  // error when the record could not be written (then nothing changed).
  absl::StatusOr<v1::CheckpointRef> InvalidateCheckpoints(
      const v1::InvalidateCheckpointsRequest& request, absl::Time now);

  // ---- job control
  v1::JobStatus Status(absl::Time now) const;
  // Ends the job as STOPPED (no effect on an ended job); returns the status after.
  v1::JobStatus Stop(const std::string& reason, absl::Time now);
  // Drives time: forms a generation whose settle time passed, expires held Joins,
  // detects dead nodes and stuck ranks.
  void Tick(absl::Time now);
  // The coordinator is going away (not the job: a successor resumes it): held Joins fail
  // with `status`, streams close with it, later calls are refused with it.
  void Shutdown(const absl::Status& status);

  v1::JobPhase phase() const;
  int64_t generation() const;
  bool ended() const;
  // Blocks until the job ended or `deadline`; returns whether it ended.
  bool AwaitEnd(absl::Time deadline) const;
  JobMetrics Metrics(absl::Time now) const;
  const JobConfig& config() const { return config_; }

 private:
  struct RankSlot {
    v1::RankHealth health;
    absl::Time step_advanced_at;  // when it entered RUNNING or its step last grew
  };
  struct Member {
    v1::NodeAssignment assignment;
    std::string incarnation;
    bool alive = true;
    absl::Time last_beat;
    uint64_t stream_id = 0;
    std::shared_ptr<CommandSink> sink;
    std::vector<RankSlot> ranks;
  };
  struct Joiner {
    v1::JoinRequest request;
    uint64_t ticket = 0;
    uint64_t order = 0;  // join order
    absl::Time deadline;
    absl::Duration timeout;
    JoinDone done;
  };
  struct PendingStep {
    int32_t num_shards = 0;
    std::string directory;
    std::vector<bool> have;
    int32_t received = 0;
  };
  struct StagedShard {
    v1::ShardReport report;
    ShardDone done;
    absl::Time now;
  };

  // rendezvous (job_rendezvous.cc)
  void MaybeFormLocked(absl::Time now, Deferred* deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FormLocked(absl::Time now, Deferred* deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Joiner RemoveJoinerLocked(const std::string& node_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireJoinsLocked(absl::Time now, Deferred* deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // lifecycle (job_state.cc)
  void FailureLocked(const std::string& cause, absl::Time now, Deferred* deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BeginGenerationLocked(const std::string& reason, absl::Time now, Deferred* deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndLocked(v1::JobPhase phase, const std::string& reason, absl::Time now,
                 Deferred* deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EventLocked(v1::JobEvent::Kind kind, const std::string& node_id, int32_t rank,
                   int64_t step, const std::string& message, absl::Time now, Deferred* deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends one record (serialised with the shard drainer by journal_mu_).
  absl::Status JournalLocked(const v1::JournalRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckCurrentLocked(int64_t generation, const char* rpc) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  v1::JobStatus StatusLocked(absl::Time now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // health (job_health.cc)
  absl::Status ValidateHealthLocked(const std::string& node_id, const Member& member,
                                    const v1::NodeHealth& message) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Records a (validated) message. May end the generation or the job: `member` is
  // invalid after it returns.
  void ApplyHealthLocked(const std::string& node_id, Member& member,
                         const v1::NodeHealth& message, absl::Time now, Deferred* deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScanHealthLocked(absl::Time now, Deferred* deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // checkpoints (job_checkpoint.cc)
  absl::Status ValidateShardLocked(const v1::ShardReport& report) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Counts a durable report; returns whether its step is complete. INVALID_ARGUMENT when
  // it disagrees with the step's earlier reports (num_shards, directory).
  absl::StatusOr<bool> ApplyShardLocked(const v1::ShardReport& report, int32_t* received)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journals the complete step's commit, then makes it the latest.
  absl::Status CommitLocked(int64_t step, absl::Time now, Deferred* deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrainShardJournal();
  v1::ShardAck AckLocked(int64_t step, int32_t received, bool committed) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Records a commit in committed_ (bounded) and makes it the latest.
  void RecordCommitLocked(const v1::CheckpointRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a journaled (or just journaled) invalidation.
  void ApplyInvalidationLocked(const v1::InvalidationRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const JobConfig config_;
  JournalSink* const journal_;
  JobStore* const store_;
  JobEvents* const events_;

  mutable absl::Mutex mu_;
  // Serialises appends: JobState's own (under mu_) and the shard drainer's (without it).
  absl::Mutex journal_mu_ ABSL_ACQUIRED_AFTER(mu_);

  v1::JobPhase phase_ ABSL_GUARDED_BY(mu_) = v1::JOB_PHASE_WAITING;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 1;
  bool formed_ ABSL_GUARDED_BY(mu_) = false;
  int32_t restarts_ ABSL_GUARDED_BY(mu_) = 0;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  absl::Status shutdown_ ABSL_GUARDED_BY(mu_);  // OK until Shutdown()

  // The formed generation.
  absl::flat_hash_map<std::string, Member> members_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> member_order_ ABSL_GUARDED_BY(mu_);  // by node_rank
  int32_t world_size_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t ranks_succeeded_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, std::string> streams_ ABSL_GUARDED_BY(mu_);  // id -> node
  uint64_t next_stream_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Time next_health_scan_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  // Nodes waiting for the generation being formed (or the next one, while RUNNING).
  absl::flat_hash_map<std::string, Joiner> joiners_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::string> tickets_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t join_order_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_join_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time next_join_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Survivors of the last generation expected to re-join, and how many did.
  absl::Time generation_began_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::flat_hash_set<std::string> expected_ ABSL_GUARDED_BY(mu_);
  int32_t expected_joined_ ABSL_GUARDED_BY(mu_) = 0;
  // Every member of the last generation, survivor or dead, so that the formed event names
  // each one left out (a node declared dead is not in expected_ but was lost all the same).
  absl::flat_hash_set<std::string> last_members_ ABSL_GUARDED_BY(mu_);
  // Restart backoff: whether a rank of the formed generation completed a step, how many
  // generations in a row failed without, and the earliest time the next one may form.
  bool generation_progressed_ ABSL_GUARDED_BY(mu_) = false;
  int32_t failures_without_progress_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time form_not_before_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  // Checkpoints.
  v1::CheckpointRef latest_ ABSL_GUARDED_BY(mu_);
  // Every commit still valid, by step (the newest kMaxCommitHistory): what an
  // invalidation falls back to.
  std::map<int64_t, v1::CheckpointRef> committed_ ABSL_GUARDED_BY(mu_);
  // Invalidated steps, oldest first (the last kMaxInvalidShown), for JobStatus.
  std::vector<v1::InvalidCheckpoint> invalid_ ABSL_GUARDED_BY(mu_);
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, PendingStep> pending_steps_ ABSL_GUARDED_BY(mu_);
  std::vector<StagedShard> staged_shards_ ABSL_GUARDED_BY(mu_);
  bool shard_writer_active_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace colossus::launcher
