// The coordinator's checkpoint commit across restarts (JobState driven by scripted
// events): a step whose shards were only half reported by a 4-rank generation must never
// be committed, neither by the old generation's late reports, nor by the 2-rank
// generation that follows (its own shards of that step start from nothing and commit
// with its own shard count), nor by a coordinator restarted on the journal; a step saved
// again by a generation that fell back past it commits only when complete; a generation
// formed without a node of the last one names it, whether that node was declared dead or
// did not re-join.
#include <memory>
#include <string>
#include <vector>

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
using JoinOutcome = std::shared_ptr<Outcome<v1::JoinResponse>>;

JobConfig ElasticConfig() {
  JobConfig c;
  c.job_id = "job";
  c.min_nodes = 1;
  c.max_nodes = 2;
  c.settle = absl::Seconds(5);  // both join at once: max_nodes forms generation 1
  c.node_timeout = absl::Seconds(30);
  c.hang_timeout = absl::Seconds(600);
  c.max_restarts = 3;
  return c;
}

JoinOutcome Join(JobState& state, const std::string& node, int64_t generation, absl::Time now) {
  auto out = std::make_shared<Outcome<v1::JoinResponse>>();
  testing::JoinInto(state, MakeJoin(node, 2, generation), now, out);
  return out;
}

// Nodes a and b (2 ranks each) form generation 1, world size 4; step 40 is committed
// with 4 shards, and only ranks 0 and 2 of step 80 report. Then b goes silent: past
// the node timeout, generation 2 forms with a alone (world size 2). Returns a's
// generation-2 JoinResponse.
v1::JoinResponse ShrinkWithStep80HalfReported(JobState& state) {
  JoinOutcome a = Join(state, "a", 0, T0());
  JoinOutcome b = Join(state, "b", 0, T0());
  EXPECT_TRUE(a->done() && a->result->ok() && b->done() && b->result->ok());
  EXPECT_EQ(a->value().world_size(), 4);
  auto sink_a = std::make_shared<RecordingSink>();
  auto sink_b = std::make_shared<RecordingSink>();
  std::vector<v1::RankHealth> running = {MakeRank(0, v1::RANK_STATE_RUNNING, 0),
                                         MakeRank(1, v1::RANK_STATE_RUNNING, 0)};
  uint64_t id_a = *state.OpenHealthStream(MakeHealth("a", 1, running), sink_a, T0());
  (void)*state.OpenHealthStream(MakeHealth("b", 1, running), sink_b, T0());
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_TRUE(Report(state, MakeShard(1, 40, rank, 4, "/c/step40"), T0()).ok());
  }
  EXPECT_EQ(state.LatestCheckpoint().step(), 40);
  for (int rank : {0, 2}) {
    absl::StatusOr<v1::ShardAck> ack = Report(state, MakeShard(1, 80, rank, 4, "/c/step80"), T0());
    EXPECT_TRUE(ack.ok()) << ack.status();
    EXPECT_FALSE(ack.ok() && ack->committed());
  }
  // a keeps beating, b is silent: declared dead at the node timeout, a told to restart.
  for (int s = 5; s <= 35; s += 5) {
    EXPECT_TRUE(state.Beat(id_a, MakeHealth("a", 1, running), T0() + absl::Seconds(s)).ok());
    state.Tick(T0() + absl::Seconds(s));
  }
  EXPECT_EQ(state.generation(), 2);
  EXPECT_TRUE(sink_b->commands().empty()) << "a dead node is not told to restart";
  JoinOutcome a2 = Join(state, "a", 2, T0() + absl::Seconds(36));
  // b was declared dead before the restart: a alone is every survivor, min_nodes is met.
  state.Tick(T0() + absl::Seconds(37));
  EXPECT_TRUE(a2->done());
  if (!a2->done() || !a2->result->ok()) return {};
  return a2->value();
}

TEST(ElasticCommit, HalfReportedStepOfTheOldGenerationIsNeverCommitted) {
  MemoryJournal journal;
  JobEvents events;
  JobState state(ElasticConfig(), &journal, nullptr, &events);
  v1::JoinResponse gen2 = ShrinkWithStep80HalfReported(state);
  ASSERT_EQ(gen2.generation(), 2);
  ASSERT_EQ(gen2.world_size(), 2);
  EXPECT_EQ(gen2.num_nodes(), 1);
  EXPECT_EQ(state.LatestCheckpoint().step(), 40) << "generation 2 resumes from the last full step";

  // The old generation's missing shards arrive late (zombies): refused, nothing counts.
  for (int rank : {1, 3}) {
    absl::StatusOr<v1::ShardAck> zombie = Report(state, MakeShard(1, 80, rank, 4, "/c/step80"), T0());
    EXPECT_EQ(zombie.status().code(), absl::StatusCode::kFailedPrecondition) << zombie.status();
  }
  EXPECT_EQ(state.LatestCheckpoint().step(), 40);

  // Generation 2 saves step 80 again at world size 2 in the same directory: its first
  // shard is one of two (the old half is forgotten, its shard count does not clash).
  absl::StatusOr<v1::ShardAck> first = Report(state, MakeShard(2, 80, 0, 2, "/c/step80"), T0());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->committed());
  EXPECT_EQ(first->received(), 1);
  EXPECT_EQ(state.LatestCheckpoint().step(), 40)
      << "old rank 0 and 2 plus new rank 0 must not add up to a commit";
  absl::StatusOr<v1::ShardAck> second = Report(state, MakeShard(2, 80, 1, 2, "/c/step80"), T0());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->committed());
  EXPECT_EQ(state.LatestCheckpoint().step(), 80);
  EXPECT_EQ(state.LatestCheckpoint().num_shards(), 2);
  EXPECT_EQ(state.LatestCheckpoint().generation(), 2);
}

TEST(ElasticCommit, OldGenerationCompletingItsHalfAfterTheShrinkIsRefused) {
  JobState state(ElasticConfig(), nullptr, nullptr, nullptr);
  ASSERT_EQ(ShrinkWithStep80HalfReported(state).world_size(), 2);
  // Even all of the old generation's missing shards, in one burst, commit nothing.
  for (int rank : {1, 3}) {
    absl::StatusOr<v1::ShardAck> late = Report(state, MakeShard(1, 80, rank, 4, "/c/step80"), T0());
    EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(late.status().message(), HasSubstr("generation"));
  }
  // A 4-shard report in the new generation (a stale layout) does not complete it either.
  absl::StatusOr<v1::ShardAck> stale = Report(state, MakeShard(2, 80, 3, 4, "/c/step80"), T0());
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(stale->committed());
  EXPECT_EQ(stale->received(), 1);
  EXPECT_EQ(state.LatestCheckpoint().step(), 40);
}

TEST(ElasticCommit, RestartedCoordinatorDoesNotMixTheGenerationsShards) {
  MemoryJournal journal;
  {
    JobState first(ElasticConfig(), &journal, nullptr, nullptr);
    ASSERT_EQ(ShrinkWithStep80HalfReported(first).world_size(), 2);
    // Generation 2 has reported one of its two shards of step 80 when the coordinator dies.
    ASSERT_TRUE(Report(first, MakeShard(2, 80, 0, 2, "/c/step80"), T0()).ok());
  }
  JobState second(ElasticConfig(), &journal, nullptr, nullptr);
  absl::StatusOr<std::string> summary = second.Restore(journal.records(), T0() + absl::Seconds(40));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(*summary, HasSubstr("1 shard reports of unfinished steps"))
      << "only generation 2's own shard counts after replay";
  EXPECT_EQ(second.LatestCheckpoint().step(), 40);
  absl::StatusOr<v1::ShardAck> last = Report(second, MakeShard(2, 80, 1, 2, "/c/step80"), T0());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->committed());
  EXPECT_EQ(second.LatestCheckpoint().num_shards(), 2);
}

// A corrupt latest checkpoint: the next generation loads the one before and saves the
// latest step again. That save is new (not a retry of the old commit): it commits only
// when all of its shards are in, as generation 2's, and a replay keeps that commit.
TEST(ElasticCommit, StepSavedAgainAfterAFallbackCommitsOnlyWhenComplete) {
  MemoryJournal journal;
  {
    JobState state(ElasticConfig(), &journal, nullptr, nullptr);
    JoinOutcome a = Join(state, "a", 0, T0());
    JoinOutcome b = Join(state, "b", 0, T0());
    ASSERT_TRUE(a->done() && b->done());
    for (int rank = 0; rank < 4; ++rank) {
      ASSERT_TRUE(Report(state, MakeShard(1, 80, rank, 4, "/c/step80"), T0()).ok());
    }
    ASSERT_EQ(state.LatestCheckpoint().generation(), 1);
    auto sink = std::make_shared<RecordingSink>();
    uint64_t id = *state.OpenHealthStream(MakeHealth("a", 1, {MakeRank(0, v1::RANK_STATE_RUNNING, 81)}),
                                          sink, T0());
    ASSERT_TRUE(state.Beat(id, MakeHealth("a", 1, {MakeRank(1, v1::RANK_STATE_FAILED, 81)}), T0()).ok());
    JoinOutcome a2 = Join(state, "a", 2, T0() + absl::Seconds(1));
    JoinOutcome b2 = Join(state, "b", 2, T0() + absl::Seconds(1));
    ASSERT_TRUE(a2->done() && b2->done() && a2->result->ok());
    ASSERT_EQ(a2->value().resume_from().step(), 80);
    // Step 80 did not load; generation 2 resumed from 40 and saves step 80 again.
    for (int rank = 0; rank < 3; ++rank) {
      absl::StatusOr<v1::ShardAck> ack = Report(state, MakeShard(2, 80, rank, 4, "/c/step80"), T0());
      ASSERT_TRUE(ack.ok()) << ack.status();
      EXPECT_FALSE(ack->committed()) << "rank " << rank << ": not a retry of generation 1's commit";
      EXPECT_EQ(ack->received(), rank + 1);
      EXPECT_EQ(state.LatestCheckpoint().generation(), 1);
    }
    absl::StatusOr<v1::ShardAck> last = Report(state, MakeShard(2, 80, 3, 4, "/c/step80"), T0());
    ASSERT_TRUE(last.ok()) << last.status();
    EXPECT_TRUE(last->committed());
    EXPECT_EQ(state.LatestCheckpoint().generation(), 2);
    // Within generation 2 a report repeated after its commit is still a retry.
    absl::StatusOr<v1::ShardAck> retry = Report(state, MakeShard(2, 80, 0, 4, "/c/step80"), T0());
    ASSERT_TRUE(retry.ok()) << retry.status();
    EXPECT_TRUE(retry->committed());
  }
  JobState replayed(ElasticConfig(), nullptr, nullptr, nullptr);
  ASSERT_TRUE(replayed.Restore(journal.records(), T0() + absl::Seconds(5)).ok());
  EXPECT_EQ(replayed.LatestCheckpoint().step(), 80);
  EXPECT_EQ(replayed.LatestCheckpoint().generation(), 2);
}

// The usual order on a real node loss: the survivors' ranks fail first (their peers'
// connections reset), so the lost node is still a member when the restart begins; it
// never re-joins, and the generation forms without it after the node timeout. The
// formed event names it and the new world size.
TEST(ElasticCommit, GenerationFormedWithoutALostNodeNamesIt) {
  JobEvents events;
  JobState state(ElasticConfig(), nullptr, nullptr, &events);
  JoinOutcome a = Join(state, "a", 0, T0());
  JoinOutcome b = Join(state, "b", 0, T0());
  ASSERT_TRUE(a->done() && b->done());
  auto sink_a = std::make_shared<RecordingSink>();
  uint64_t id_a = *state.OpenHealthStream(
      MakeHealth("a", 1, {MakeRank(0, v1::RANK_STATE_RUNNING, 0)}), sink_a, T0());
  ASSERT_TRUE(state.Beat(id_a, MakeHealth("a", 1, {MakeRank(1, v1::RANK_STATE_FAILED, 104)}),
                         T0() + absl::Seconds(1)).ok());
  ASSERT_EQ(state.generation(), 2);
  JoinOutcome a2 = Join(state, "a", 2, T0() + absl::Seconds(2));
  state.Tick(T0() + absl::Seconds(20));
  EXPECT_FALSE(a2->done()) << "b was alive at the restart: it gets the node timeout to re-join";
  state.Tick(T0() + absl::Seconds(32));
  ASSERT_TRUE(a2->done() && a2->result->ok());
  EXPECT_EQ(a2->value().world_size(), 2);
  std::string formed;
  for (const v1::JobEvent& e : events.Recent(100)) {
    if (e.kind() == v1::JobEvent::KIND_GENERATION_FORMED && e.generation() == 2) formed = e.message();
  }
  EXPECT_THAT(formed, HasSubstr("world size 2 without node b"));
}

// The other way a node is lost: declared dead (silent past the node timeout) before the
// restart, so it is not among the survivors awaited; it is still named.
TEST(ElasticCommit, GenerationFormedWithoutADeadNodeNamesIt) {
  JobEvents events;
  JobState state(ElasticConfig(), nullptr, nullptr, &events);
  ASSERT_EQ(ShrinkWithStep80HalfReported(state).world_size(), 2);
  std::string formed;
  for (const v1::JobEvent& e : events.Recent(100)) {
    if (e.kind() == v1::JobEvent::KIND_GENERATION_FORMED && e.generation() == 2) formed = e.message();
  }
  EXPECT_THAT(formed, HasSubstr("world size 2 without node b"));
}

}  // namespace
}  // namespace colossus::launcher
