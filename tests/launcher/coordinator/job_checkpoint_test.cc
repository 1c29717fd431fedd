// Checkpoint commit: a step is latest only once every shard is in and its commit is
// journaled; duplicates count once; zombies are refused; a coordinator restarted between
// two shard reports still commits when the last one arrives; steps the workers could not
// load are invalidated (journaled, replayed, shown, saved again).
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "job_test_util.h"

namespace colossus::launcher {
namespace {

using ::testing::HasSubstr;
using testing::MakeHealth;
using testing::MakeJoin;
using testing::MakeRank;
using testing::MakeShard;
using testing::MemoryJournal;
using testing::Outcome;
using testing::RecordingSink;
using testing::Report;
using testing::T0;

JobConfig Config() {
  JobConfig c;
  c.job_id = "job";
  c.min_nodes = 1;
  c.max_nodes = 1;
  return c;
}

// Forms generation `generation` with one node of four ranks.
void Form(JobState& state, int64_t generation = 0) {
  auto out = std::make_shared<Outcome<v1::JoinResponse>>();
  testing::JoinInto(state, MakeJoin("a", 4, generation), T0(), out);
  ASSERT_TRUE(out->done() && out->result->ok()) << (out->done() ? out->status().ToString() : "held");
}

TEST(JobCheckpoint, CommitsOnlyWhenEveryShardIsIn) {
  MemoryJournal journal;
  JobEvents events;
  JobState state(Config(), &journal, nullptr, &events);
  Form(state);
  for (int rank = 0; rank < 3; ++rank) {
    absl::StatusOr<v1::ShardAck> ack = Report(state, MakeShard(1, 100, rank, 4), T0());
    ASSERT_TRUE(ack.ok()) << ack.status();
    EXPECT_FALSE(ack->committed());
    EXPECT_EQ(ack->received(), rank + 1);
    EXPECT_EQ(state.LatestCheckpoint().step(), 0) << "a step with a shard missing is never latest";
  }
  absl::StatusOr<v1::ShardAck> ack = Report(state, MakeShard(1, 100, 3, 4), T0());
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(ack->committed());
  EXPECT_EQ(ack->latest().step(), 100);
  EXPECT_EQ(ack->latest().num_shards(), 4);
  EXPECT_EQ(ack->latest().generation(), 1);
  EXPECT_EQ(state.LatestCheckpoint().directory(), "/ckpt/step");
  // Journal order: the generation, four shard batches, then the commit.
  std::vector<v1::JournalRecord> records = journal.records();
  ASSERT_EQ(records.size(), 6u);
  for (int i = 1; i <= 4; ++i) EXPECT_TRUE(records[i].has_shards()) << i;
  ASSERT_TRUE(records[5].has_committed());
  EXPECT_EQ(records[5].committed().step(), 100);
  bool event = false;
  for (const v1::JobEvent& e : events.Recent(100)) {
    event |= e.kind() == v1::JobEvent::KIND_CHECKPOINT_COMMITTED && e.step() == 100;
  }
  EXPECT_TRUE(event);
  // New Joins resume from it.
  EXPECT_EQ(state.Status(T0()).latest_checkpoint().step(), 100);
}

TEST(JobCheckpoint, IncompleteStepNeverLatestEvenWhenALaterOneCommits) {
  JobState state(Config(), nullptr, nullptr, nullptr);
  Form(state);
  for (int rank : {0, 1, 2}) ASSERT_TRUE(Report(state, MakeShard(1, 10, rank, 4, "/c/10"), T0()).ok());
  for (int rank : {0, 1, 2, 3}) ASSERT_TRUE(Report(state, MakeShard(1, 20, rank, 4, "/c/20"), T0()).ok());
  EXPECT_EQ(state.LatestCheckpoint().step(), 20);
  absl::StatusOr<v1::ShardAck> late = Report(state, MakeShard(1, 10, 3, 4, "/c/10"), T0());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.status().message(), HasSubstr("older than the latest committed step 20"));
  EXPECT_EQ(state.LatestCheckpoint().step(), 20);
}

TEST(JobCheckpoint, DuplicatesAreIdempotentAndMismatchesRefused) {
  JobState state(Config(), nullptr, nullptr, nullptr);
  Form(state);
  ASSERT_EQ(Report(state, MakeShard(1, 5, 0, 4), T0())->received(), 1);
  ASSERT_EQ(Report(state, MakeShard(1, 5, 0, 4), T0())->received(), 1) << "a duplicate counts once";
  absl::StatusOr<v1::ShardAck> bad = Report(state, MakeShard(1, 5, 1, 8), T0());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("num_shards 8"));
  bad = Report(state, MakeShard(1, 5, 4, 4), T0());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("rank 4"));
  for (int rank : {1, 2, 3}) ASSERT_TRUE(Report(state, MakeShard(1, 5, rank, 4), T0()).ok());
  absl::StatusOr<v1::ShardAck> again = Report(state, MakeShard(1, 5, 3, 4), T0());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->committed()) << "a retry after the commit is acknowledged as committed";
}

TEST(JobCheckpoint, ZombieCannotCommitIntoTheNextGeneration) {
  JobState state(Config(), nullptr, nullptr, nullptr);
  Form(state);
  for (int rank : {0, 1, 2}) ASSERT_TRUE(Report(state, MakeShard(1, 50, rank, 4), T0()).ok());
  auto sink = std::make_shared<RecordingSink>();
  uint64_t id = *state.OpenHealthStream(MakeHealth("a", 1), sink, T0());
  ASSERT_TRUE(state.Beat(id, MakeHealth("a", 1, {MakeRank(2, v1::RANK_STATE_FAILED, 50)}), T0()).ok());
  Form(state, 2);
  ASSERT_EQ(state.generation(), 2);
  // The zombie's last shard of step 50 is refused, and generation 2's own partial step 50
  // starts from nothing.
  absl::StatusOr<v1::ShardAck> zombie = Report(state, MakeShard(1, 50, 3, 4), T0());
  EXPECT_EQ(zombie.status().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<v1::ShardAck> fresh = Report(state, MakeShard(2, 50, 3, 4), T0());
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE(fresh->committed());
  EXPECT_EQ(fresh->received(), 1);
  EXPECT_EQ(state.LatestCheckpoint().step(), 0);
}

TEST(JobCheckpoint, RestartBetweenTwoShardReportsThenTheLastShardCommits) {
  MemoryJournal journal;
  {
    JobState first(Config(), &journal, nullptr, nullptr);
    Form(first);
    for (int rank : {0, 1, 2}) ASSERT_TRUE(Report(first, MakeShard(1, 300, rank, 4), T0()).ok());
  }  // killed here
  JobState second(Config(), &journal, nullptr, nullptr);
  absl::StatusOr<std::string> summary = second.Restore(journal.records(), T0());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(*summary, HasSubstr("3 shard reports of unfinished steps"));
  EXPECT_EQ(second.LatestCheckpoint().step(), 0);
  absl::StatusOr<v1::ShardAck> last = Report(second, MakeShard(1, 300, 3, 4), T0());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->committed());
  EXPECT_EQ(last->received(), 4);
  EXPECT_EQ(second.LatestCheckpoint().step(), 300);
  // A third coordinator sees the commit.
  JobState third(Config(), nullptr, nullptr, nullptr);
  ASSERT_TRUE(third.Restore(journal.records(), T0()).ok());
  EXPECT_EQ(third.LatestCheckpoint().step(), 300);
}

TEST(JobCheckpoint, CompleteStepWithoutItsCommitRecordIsCommittedOnReplay) {
  MemoryJournal journal;
  {
    JobState first(Config(), &journal, nullptr, nullptr);
    Form(first);
    for (int rank : {0, 1, 2}) ASSERT_TRUE(Report(first, MakeShard(1, 7, rank, 4), T0()).ok());
    journal.set_fail(absl::ResourceExhaustedError("No space left on device"));
    absl::StatusOr<v1::ShardAck> ack = Report(first, MakeShard(1, 7, 3, 4), T0());
    EXPECT_EQ(ack.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(first.LatestCheckpoint().step(), 0) << "not journaled: not latest";
    journal.set_fail(absl::OkStatus());
    // The last shard's record made it this time, its commit did not (killed in between).
    v1::JournalRecord shards;
    *shards.mutable_shards()->add_shards() = MakeShard(1, 7, 3, 4);
    ASSERT_TRUE(journal.Append(shards).ok());
  }
  JobState second(Config(), &journal, nullptr, nullptr);
  ASSERT_TRUE(second.Restore(journal.records(), T0()).ok());
  EXPECT_EQ(second.LatestCheckpoint().step(), 7);
  EXPECT_TRUE(journal.records().back().has_committed());
}

TEST(JobCheckpoint, FailedCommitAppendIsRetriedByTheNextReport) {
  // Shard batches reach the journal; the commit record does not (EIO) until told.
  class CommitFails : public JournalSink {
   public:
    absl::Status Append(const v1::JournalRecord& r) override {
      if (r.has_committed() && fail_commit) return absl::DataLossError("EIO writing coordinator.journal");
      records.push_back(r);
      return absl::OkStatus();
    }
    bool fail_commit = false;
    std::vector<v1::JournalRecord> records;
  };
  CommitFails journal;
  JobState state(Config(), &journal, nullptr, nullptr);
  Form(state);
  for (int rank : {0, 1, 2}) ASSERT_TRUE(Report(state, MakeShard(1, 9, rank, 4), T0()).ok());
  journal.fail_commit = true;
  absl::StatusOr<v1::ShardAck> ack = Report(state, MakeShard(1, 9, 3, 4), T0());
  EXPECT_EQ(ack.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(ack.status().message(), HasSubstr("step 9 has every shard but was not committed"));
  EXPECT_EQ(state.LatestCheckpoint().step(), 0);
  journal.fail_commit = false;
  ack = Report(state, MakeShard(1, 9, 3, 4), T0());  // the worker's retry
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_TRUE(ack->committed());
  EXPECT_EQ(state.LatestCheckpoint().step(), 9);
  EXPECT_TRUE(journal.records.back().has_committed());
}

// Commits every shard of `step` in `generation` (four ranks, directory /c/<step>).
void CommitStep(JobState& state, int64_t generation, int64_t step) {
  for (int rank = 0; rank < 4; ++rank) {
    absl::StatusOr<v1::ShardAck> ack =
        Report(state, MakeShard(generation, step, rank, 4, absl::StrCat("/c/", step)), T0());
    ASSERT_TRUE(ack.ok()) << ack.status();
  }
  ASSERT_EQ(state.LatestCheckpoint().step(), step);
}

// Moves the job to generation `next` (formed): rank 2 of node a fails.
void Restart(JobState& state, int64_t next) {
  auto sink = std::make_shared<RecordingSink>();
  absl::StatusOr<uint64_t> id = state.OpenHealthStream(MakeHealth("a", next - 1), sink, T0());
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(state.Beat(*id, MakeHealth("a", next - 1, {MakeRank(2, v1::RANK_STATE_FAILED, 1)}), T0()).ok());
  Form(state, next);
  ASSERT_EQ(state.generation(), next);
}

v1::InvalidateCheckpointsRequest Invalidate(int64_t generation, int64_t resumed,
                                            int64_t bad_step, const std::string& reason) {
  v1::InvalidateCheckpointsRequest r;
  r.mutable_header()->set_job_id("job");
  r.mutable_header()->set_generation(generation);
  r.mutable_resumed()->set_step(resumed);
  r.mutable_resumed()->set_directory(absl::StrCat("/c/", resumed));
  r.mutable_resumed()->set_num_shards(4);
  v1::InvalidCheckpoint* bad = r.add_invalid();
  bad->set_step(bad_step);
  bad->set_directory(absl::StrCat("/c/", bad_step));
  bad->set_reason(reason);
  return r;
}

TEST(JobCheckpoint, FallbackPastACorruptStepIsJournaledShownAndTheStepSavedAgain) {
  MemoryJournal journal;
  JobEvents events;
  JobState state(Config(), &journal, nullptr, &events);
  Form(state);
  CommitStep(state, 1, 40);
  CommitStep(state, 1, 80);
  Restart(state, 2);
  const std::string why = "rank 1: /c/80/shard-1-of-4.bin: block 2 checksum 0badc0de, header says 12345678";

  // Refused: a zombie of generation 1, a resumed step newer than the latest.
  absl::StatusOr<v1::CheckpointRef> refused = state.InvalidateCheckpoints(Invalidate(1, 40, 80, why), T0());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  refused = state.InvalidateCheckpoints(Invalidate(2, 120, 80, why), T0());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("resumed.step 120"));
  EXPECT_EQ(state.LatestCheckpoint().step(), 80);

  absl::StatusOr<v1::CheckpointRef> latest = state.InvalidateCheckpoints(Invalidate(2, 40, 80, why), T0());
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->step(), 40);
  EXPECT_EQ(latest->generation(), 1) << "the coordinator's own record of step 40";
  EXPECT_EQ(state.LatestCheckpoint().step(), 40);
  v1::JobStatus status = state.Status(T0());
  EXPECT_EQ(status.latest_checkpoint().step(), 40);
  ASSERT_EQ(status.invalid_checkpoints_size(), 1);
  EXPECT_EQ(status.invalid_checkpoints(0).step(), 80);
  EXPECT_EQ(status.invalid_checkpoints(0).reason(), why);
  EXPECT_EQ(status.invalid_checkpoints(0).generation(), 2);
  int invalidated_events = 0;
  for (const v1::JobEvent& e : events.Recent(100)) {
    if (e.kind() != v1::JobEvent::KIND_CHECKPOINT_INVALIDATED) continue;
    ++invalidated_events;
    EXPECT_EQ(e.step(), 80);
    EXPECT_THAT(e.message(), HasSubstr("checkpoint step 80 invalid"));
    EXPECT_THAT(e.message(), HasSubstr("shard-1-of-4.bin"));
    EXPECT_THAT(e.message(), HasSubstr("resumed from step 40"));
  }
  EXPECT_EQ(invalidated_events, 1);
  ASSERT_TRUE(journal.records().back().has_invalidated());

  // A repeat changes nothing and journals nothing.
  const size_t records = journal.records().size();
  latest = state.InvalidateCheckpoints(Invalidate(2, 40, 80, why), T0());
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->step(), 40);
  EXPECT_EQ(journal.records().size(), records);

  // A coordinator restarted from the journal does not bring step 80 back.
  {
    JobState replayed(Config(), nullptr, nullptr, nullptr);
    ASSERT_TRUE(replayed.Restore(journal.records(), T0()).ok());
    EXPECT_EQ(replayed.LatestCheckpoint().step(), 40);
    ASSERT_EQ(replayed.Status(T0()).invalid_checkpoints_size(), 1);
    EXPECT_EQ(replayed.Status(T0()).invalid_checkpoints(0).reason(), why);
  }

  // Generation 2 saves step 80 again: a new step, committed only when all of it is in.
  for (int rank : {0, 1, 2}) {
    absl::StatusOr<v1::ShardAck> ack = Report(state, MakeShard(2, 80, rank, 4, "/c/80"), T0());
    ASSERT_TRUE(ack.ok()) << ack.status();
    EXPECT_FALSE(ack->committed()) << "rank " << rank;
  }
  EXPECT_EQ(state.LatestCheckpoint().step(), 40);
  absl::StatusOr<v1::ShardAck> last = Report(state, MakeShard(2, 80, 3, 4, "/c/80"), T0());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->committed());
  EXPECT_EQ(state.LatestCheckpoint().step(), 80);
  EXPECT_EQ(state.LatestCheckpoint().generation(), 2);
  JobState replayed(Config(), nullptr, nullptr, nullptr);
  ASSERT_TRUE(replayed.Restore(journal.records(), T0()).ok());
  EXPECT_EQ(replayed.LatestCheckpoint().step(), 80);
  EXPECT_EQ(replayed.LatestCheckpoint().generation(), 2);
}

TEST(JobCheckpoint, FallbackPastEveryStepAndAFailedJournalAppend) {
  MemoryJournal journal;
  JobState state(Config(), &journal, nullptr, nullptr);
  Form(state);
  CommitStep(state, 1, 40);
  CommitStep(state, 1, 80);
  Restart(state, 2);
  journal.set_fail(absl::DataLossError("EIO writing coordinator.journal"));
  absl::StatusOr<v1::CheckpointRef> latest =
      state.InvalidateCheckpoints(Invalidate(2, 0, 80, "rank 0: corrupt"), T0());
  EXPECT_EQ(latest.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(latest.status().message(), HasSubstr("not invalidated"));
  EXPECT_EQ(state.LatestCheckpoint().step(), 80) << "not journaled: nothing changed";
  journal.set_fail(absl::OkStatus());
  // None loaded: every committed step is invalid (step 40 without a reason of its own).
  latest = state.InvalidateCheckpoints(Invalidate(2, 0, 80, "rank 0: corrupt"), T0());
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->step(), 0);
  v1::JobStatus status = state.Status(T0());
  ASSERT_EQ(status.invalid_checkpoints_size(), 2);
  EXPECT_EQ(status.invalid_checkpoints(0).step(), 40);
  EXPECT_THAT(status.invalid_checkpoints(0).reason(), HasSubstr("not loaded by the workers"));
  EXPECT_EQ(status.invalid_checkpoints(1).step(), 80);
  // The next generation is told to start over, not to load step 80.
  Restart(state, 3);
  EXPECT_EQ(state.LatestCheckpoint().step(), 0);
}

}  // namespace
}  // namespace colossus::launcher
