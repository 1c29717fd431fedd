// JobState driven by scripted events and a fake clock: rendezvous, fencing, health,
// restart decisions, the job's end, and replay of its journal.
#include "colossus/launcher/job_state.h"

#include <algorithm>
#include <map>
#include <random>

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
using testing::MemoryJournal;
using testing::Outcome;
using testing::RecordingSink;
using testing::T0;
using JoinOutcome = std::shared_ptr<Outcome<v1::JoinResponse>>;

JobConfig Config(int min_nodes, int max_nodes) {
  JobConfig c;
  c.job_id = "job";
  c.min_nodes = min_nodes;
  c.max_nodes = max_nodes;
  c.node_timeout = absl::Seconds(30);
  c.hang_timeout = absl::Seconds(120);
  c.max_restarts = 3;
  return c;
}

// One job: its state, store, events and journal.
struct Job {
  explicit Job(JobConfig config) : state(std::move(config), &journal, &store, &events) {}

  JoinOutcome Join(const std::string& node, int lws, absl::Time now, int64_t generation = 0,
                   const std::string& incarnation = "inc-1") {
    auto out = std::make_shared<Outcome<v1::JoinResponse>>();
    testing::JoinInto(state, MakeJoin(node, lws, generation, incarnation), now, out);
    return out;
  }
  // Opens a health stream for a member; returns its sink and stream id.
  std::pair<std::shared_ptr<RecordingSink>, uint64_t> Open(const std::string& node,
                                                           absl::Time now,
                                                           std::vector<v1::RankHealth> ranks = {}) {
    auto sink = std::make_shared<RecordingSink>();
    absl::StatusOr<uint64_t> id =
        state.OpenHealthStream(MakeHealth(node, state.generation(), std::move(ranks)), sink, now);
    EXPECT_TRUE(id.ok()) << id.status();
    return {sink, id.ok() ? *id : 0};
  }
  std::vector<v1::JobEvent> Events(v1::JobEvent::Kind kind) const {
    std::vector<v1::JobEvent> out;
    for (const v1::JobEvent& e : events.Recent(4096)) {
      if (e.kind() == kind) out.push_back(e);
    }
    return out;
  }

  MemoryJournal journal;
  JobStore store;
  JobEvents events;
  JobState state;
};

TEST(JobStateRendezvous, OneAgentFormsAtOnce) {
  Job job(Config(1, 1));
  JoinOutcome a = job.Join("node-a", 8, T0());
  ASSERT_TRUE(a->done());
  ASSERT_TRUE(a->result->ok()) << a->status();
  EXPECT_EQ(a->value().generation(), 1);
  EXPECT_EQ(a->value().assignment().node_rank(), 0);
  EXPECT_EQ(a->value().assignment().first_rank(), 0);
  EXPECT_EQ(a->value().world_size(), 8);
  EXPECT_EQ(a->value().num_nodes(), 1);
  EXPECT_EQ(a->value().master_address(), "node-a.example:29500");
  EXPECT_EQ(a->value().resume_from().step(), 0);
  EXPECT_EQ(job.state.phase(), v1::JOB_PHASE_RUNNING);
  // The generation was journaled with its member.
  std::vector<v1::JournalRecord> records = job.journal.records();
  ASSERT_EQ(records.size(), 1u);
  ASSERT_TRUE(records[0].has_generation());
  EXPECT_EQ(records[0].generation().generation(), 1);
  ASSERT_EQ(records[0].generation().nodes_size(), 1);
  EXPECT_EQ(records[0].generation().nodes(0).node_id(), "node-a");
}

TEST(JobStateRendezvous, TwoAgentsOrderedByNodeIdWithContiguousRanks) {
  Job job(Config(2, 2));
  JoinOutcome b = job.Join("node-b", 8, T0());
  EXPECT_FALSE(b->done()) << "one node of two: the Join is held";
  EXPECT_EQ(job.state.phase(), v1::JOB_PHASE_WAITING);
  JoinOutcome a = job.Join("node-a", 4, T0() + absl::Seconds(1));
  ASSERT_TRUE(a->done() && b->done());
  ASSERT_TRUE(a->result->ok() && b->result->ok());
  EXPECT_EQ(a->value().assignment().node_rank(), 0);
  EXPECT_EQ(a->value().assignment().first_rank(), 0);
  EXPECT_EQ(b->value().assignment().node_rank(), 1);
  EXPECT_EQ(b->value().assignment().first_rank(), 4);
  EXPECT_EQ(b->value().world_size(), 12);
  EXPECT_EQ(b->value().master_address(), "node-a.example:29500");
}

TEST(JobStateRendezvous, SixtyFourAgentsInAnyOrder) {
  Job job(Config(64, 64));
  std::vector<int> order(64);
  for (int i = 0; i < 64; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  std::map<std::string, JoinOutcome> outcomes;
  for (int i = 0; i < 64; ++i) {
    std::string node = absl::StrCat("n", 100 + order[i]);
    outcomes[node] = job.Join(node, 1 + order[i] % 8, T0() + absl::Milliseconds(i));
    if (i < 63) {
      EXPECT_FALSE(outcomes[node]->done());
    }
  }
  // Walk in node_id order: node ranks count up and ranks are contiguous.
  int32_t expect_rank = 0;
  int32_t expect_node = 0;
  for (const auto& [node, out] : outcomes) {
    ASSERT_TRUE(out->done() && out->result->ok()) << node;
    const v1::JoinResponse& r = out->value();
    EXPECT_EQ(r.generation(), 1);
    EXPECT_EQ(r.assignment().node_id(), node);
    EXPECT_EQ(r.assignment().node_rank(), expect_node++);
    EXPECT_EQ(r.assignment().first_rank(), expect_rank);
    expect_rank += r.assignment().local_world_size();
    EXPECT_EQ(r.num_nodes(), 64);
  }
  EXPECT_EQ(outcomes.begin()->second->value().world_size(), expect_rank);
  EXPECT_EQ(job.state.Status(T0()).world_size(), expect_rank);
}

TEST(JobStateRendezvous, SettleTimeVersusMaxNodes) {
  JobConfig c = Config(2, 4);
  c.settle = absl::Seconds(10);
  {
    Job job(c);
    JoinOutcome a = job.Join("a", 1, T0());
    JoinOutcome b = job.Join("b", 1, T0() + absl::Seconds(1));
    job.state.Tick(T0() + absl::Seconds(6));
    EXPECT_FALSE(b->done()) << "min_nodes in, but the settle time has not passed";
    JoinOutcome cc = job.Join("c", 1, T0() + absl::Seconds(7));  // restarts the settle clock
    job.state.Tick(T0() + absl::Seconds(16));
    EXPECT_FALSE(cc->done());
    job.state.Tick(T0() + absl::Seconds(17));
    ASSERT_TRUE(a->done() && b->done() && cc->done());
    EXPECT_EQ(cc->value().num_nodes(), 3);
  }
  {
    Job job(c);
    std::vector<JoinOutcome> outs;
    for (const char* n : {"a", "b", "c"}) outs.push_back(job.Join(n, 1, T0()));
    EXPECT_FALSE(outs[0]->done());
    outs.push_back(job.Join("d", 1, T0()));  // max_nodes: no settle wait
    for (auto& o : outs) ASSERT_TRUE(o->done() && o->result->ok());
    EXPECT_EQ(outs[0]->value().num_nodes(), 4);
  }
}

TEST(JobStateRendezvous, DuplicateNodeIdRefused) {
  Job job(Config(2, 2));
  JoinOutcome first = job.Join("a", 1, T0(), 0, "inc-1");
  JoinOutcome other = job.Join("a", 1, T0(), 0, "inc-2");
  ASSERT_TRUE(other->done());
  EXPECT_EQ(other->status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(other->status().message(), HasSubstr("node a"));
  EXPECT_FALSE(first->done()) << "the first Join is unaffected";
  // The same agent retrying replaces its own held call.
  JoinOutcome retry = job.Join("a", 1, T0(), 0, "inc-1");
  ASSERT_TRUE(first->done());
  EXPECT_EQ(first->status().code(), absl::StatusCode::kAborted);
  JoinOutcome b = job.Join("b", 1, T0());
  ASSERT_TRUE(retry->done() && retry->result->ok());
  // A live member cannot join again.
  JoinOutcome again = job.Join("b", 1, T0(), 0, "inc-9");
  ASSERT_TRUE(again->done());
  EXPECT_EQ(again->status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again->status().message(), HasSubstr("live member of generation 1"));
  EXPECT_EQ(job.state.Status(T0()).nodes_joined(), 2);
}

TEST(JobStateRendezvous, MalformedJoinNamesTheField) {
  Job job(Config(1, 1));
  v1::JoinRequest r = MakeJoin("a", 0);
  auto out = std::make_shared<Outcome<v1::JoinResponse>>();
  testing::JoinInto(job.state, r, T0(), out);
  ASSERT_TRUE(out->done());
  EXPECT_EQ(out->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out->status().message(), HasSubstr("local_world_size"));
  r = MakeJoin("", 1);
  testing::JoinInto(job.state, r, T0(), out);
  EXPECT_THAT(out->status().message(), HasSubstr("node_id"));
  EXPECT_EQ(job.state.phase(), v1::JOB_PHASE_WAITING);
}

TEST(JobStateRendezvous, HeldJoinTimesOutAndCancelledJoinStopsCounting) {
  JobConfig c = Config(2, 2);
  c.join_timeout = absl::Seconds(60);
  Job job(c);
  JoinOutcome a = job.Join("a", 1, T0());
  job.state.Tick(T0() + absl::Seconds(59));
  EXPECT_FALSE(a->done());
  job.state.Tick(T0() + absl::Seconds(60));
  ASSERT_TRUE(a->done());
  EXPECT_EQ(a->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(a->status().message(), HasSubstr("node a"));

  auto b = std::make_shared<Outcome<v1::JoinResponse>>();
  uint64_t ticket = testing::JoinInto(job.state, MakeJoin("b", 1), T0() + absl::Seconds(61), b);
  EXPECT_TRUE(job.state.CancelJoin(ticket, T0() + absl::Seconds(62)));
  JoinOutcome cc = job.Join("c", 1, T0() + absl::Seconds(63));
  EXPECT_FALSE(cc->done()) << "the cancelled Join of b must not count";
  EXPECT_FALSE(b->done()) << "a cancelled Join's callback is never called";
}

// Forms a generation of the given nodes (one rank each unless lws says otherwise) and
// opens their health streams with every rank RUNNING at step 0.
std::map<std::string, std::shared_ptr<RecordingSink>> FormAndOpen(Job& job,
                                                                   const std::vector<std::string>& nodes,
                                                                   absl::Time now, int lws = 1) {
  std::vector<JoinOutcome> outs;
  for (const std::string& n : nodes) outs.push_back(job.Join(n, lws, now));
  for (auto& o : outs) EXPECT_TRUE(o->done() && o->result->ok());
  std::map<std::string, std::shared_ptr<RecordingSink>> sinks;
  for (const std::string& n : nodes) {
    std::vector<v1::RankHealth> ranks;
    for (int r = 0; r < lws; ++r) ranks.push_back(MakeRank(r, v1::RANK_STATE_RUNNING, 0));
    sinks[n] = job.Open(n, now, ranks).first;
  }
  return sinks;
}

TEST(JobStateRestart, ElasticReformAfterALeaveSpendsNoRestart) {
  JobConfig cfg = Config(2, 3);
  cfg.settle = absl::Seconds(5);  // all three join at once: max_nodes forms it
  Job job(cfg);
  auto sinks = FormAndOpen(job, {"a", "b", "c"}, T0());
  ASSERT_EQ(job.state.generation(), 1);
  v1::LeaveRequest leave;
  leave.set_node_id("c");
  leave.set_reason("drained for maintenance");
  ASSERT_TRUE(job.state.Leave(leave, T0() + absl::Seconds(1)).ok());
  EXPECT_EQ(job.state.generation(), 2);
  EXPECT_EQ(job.state.phase(), v1::JOB_PHASE_RESTARTING);
  for (const char* n : {"a", "b"}) {
    std::vector<v1::Command> cmds = sinks[n]->commands();
    ASSERT_EQ(cmds.size(), 1u) << n;
    EXPECT_EQ(cmds[0].kind(), v1::Command::KIND_RESTART);
    EXPECT_EQ(cmds[0].generation(), 2);
    EXPECT_THAT(cmds[0].reason(), HasSubstr("drained"));
    EXPECT_TRUE(sinks[n]->closed());
  }
  JoinOutcome a = job.Join("a", 1, T0() + absl::Seconds(2), 2);
  EXPECT_FALSE(a->done());
  JoinOutcome b = job.Join("b", 1, T0() + absl::Seconds(2), 2);
  // Every survivor is back and min_nodes is met: no settle wait.
  ASSERT_TRUE(a->done() && b->done() && b->result->ok());
  EXPECT_EQ(b->value().generation(), 2);
  EXPECT_EQ(b->value().num_nodes(), 2);
  EXPECT_EQ(b->value().restarts(), 0) << "a drained node costs no restart";
  EXPECT_EQ(job.Events(v1::JobEvent::KIND_NODE_LEFT).size(), 1u);
}

TEST(JobStateRestart, DeadNodeLateJoinerEntersTheNextGeneration) {
  Job job(Config(2, 3));
  auto sinks = FormAndOpen(job, {"a", "b"}, T0());
  // c comes late: generation 1 runs, so c waits for generation 2.
  JoinOutcome c = job.Join("c", 1, T0() + absl::Seconds(1));
  EXPECT_FALSE(c->done());
  EXPECT_EQ(job.state.generation(), 1);
  // a keeps beating; b goes silent.
  for (int s = 5; s <= 35; s += 5) {
    ASSERT_TRUE(job.state.Beat(1, MakeHealth("a", 1), T0() + absl::Seconds(s)).ok());
    job.state.Tick(T0() + absl::Seconds(s));
  }
  EXPECT_EQ(job.state.generation(), 2);
  std::vector<v1::JobEvent> dead = job.Events(v1::JobEvent::KIND_NODE_DEAD);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].node_id(), "b");
  EXPECT_THAT(dead[0].message(), HasSubstr("node timeout"));
  ASSERT_EQ(sinks["a"]->commands().size(), 1u);
  EXPECT_EQ(sinks["a"]->commands()[0].kind(), v1::Command::KIND_RESTART);
  EXPECT_TRUE(sinks["b"]->commands().empty()) << "a dead node is not told to restart";
  // a, the only survivor, re-joins: with c that makes min_nodes.
  JoinOutcome a = job.Join("a", 1, T0() + absl::Seconds(36), 2);
  ASSERT_TRUE(a->done() && c->done());
  ASSERT_TRUE(c->result->ok()) << c->status();
  EXPECT_EQ(c->value().generation(), 2);
  EXPECT_EQ(c->value().assignment().node_rank(), 1);
  EXPECT_EQ(a->value().restarts(), 1);
}

TEST(JobStateRestart, ElasticReformWaitsForTheSurvivorsUpToTheNodeTimeout) {
  for (bool last_comes_back : {true, false}) {
    Job job(Config(2, 4));  // settle 0: min_nodes alone would form at once
    std::vector<JoinOutcome> outs;
    for (const char* n : {"a", "b", "c", "d"}) outs.push_back(job.Join(n, 1, T0()));
    // settle 0 formed the first two; d and c wait for generation 2 as late joiners.
    ASSERT_EQ(job.state.Status(T0()).nodes_joined(), 2);
    uint64_t id = job.Open("a", T0()).second;
    job.Open("b", T0());
    ASSERT_TRUE(job.state.Beat(id, MakeHealth("a", 1, {MakeRank(0, v1::RANK_STATE_FAILED, 3)}),
                               T0() + absl::Seconds(1)).ok());
    ASSERT_EQ(job.state.generation(), 2);
    // c and d were waiting already; a is back, b (alive at the restart) is not yet.
    JoinOutcome a = job.Join("a", 1, T0() + absl::Seconds(2), 2);
    job.state.Tick(T0() + absl::Seconds(20));
    EXPECT_FALSE(a->done()) << "b survived the failure: wait for it";
    if (last_comes_back) {
      // b's arrival makes max_nodes (4): formed at once.
      JoinOutcome b = job.Join("b", 1, T0() + absl::Seconds(21), 2);
      ASSERT_TRUE(a->done() && b->done());
      EXPECT_EQ(b->value().num_nodes(), 4);
    } else {
      job.state.Tick(T0() + absl::Seconds(31));  // node_timeout (30 s) after the restart
      ASSERT_TRUE(a->done() && a->result->ok());
      EXPECT_EQ(a->value().num_nodes(), 3);
    }
  }
}

TEST(JobStateRestart, FixedSizeJobWaitsForTheFullCount) {
  JobConfig cfg = Config(2, 2);
  cfg.settle = absl::Seconds(1);
  Job job(cfg);
  FormAndOpen(job, {"a", "b"}, T0());
  v1::NodeHealth fail = MakeHealth("b", 1, {MakeRank(0, v1::RANK_STATE_FAILED, 7)});
  fail.mutable_ranks(0)->set_exit_code(3);
  ASSERT_TRUE(job.state.Beat(2, fail, T0() + absl::Seconds(1)).ok());
  EXPECT_EQ(job.state.generation(), 2);
  JoinOutcome a = job.Join("a", 1, T0() + absl::Seconds(2), 2);
  job.state.Tick(T0() + absl::Seconds(100));
  EXPECT_FALSE(a->done()) << "one node of a two-node job: wait";
  JoinOutcome b = job.Join("b", 1, T0() + absl::Seconds(101), 2);
  ASSERT_TRUE(a->done() && b->done());
  EXPECT_EQ(b->value().num_nodes(), 2);
}

TEST(JobStateFencing, OldGenerationRefusedEverywhere) {
  Job job(Config(1, 1));
  auto sinks = FormAndOpen(job, {"a"}, T0(), 2);
  ASSERT_TRUE(job.store.Set(1, v1::KEY_SCOPE_GENERATION, "nccl-id", "x").ok());
  v1::NodeHealth fail = MakeHealth("a", 1, {MakeRank(1, v1::RANK_STATE_FAILED, 3)});
  fail.mutable_ranks(0)->set_signal(9);
  ASSERT_TRUE(job.state.Beat(1, fail, T0() + absl::Seconds(1)).ok());
  ASSERT_EQ(job.state.generation(), 2);

  // The zombie's beat on its old stream.
  absl::Status beat = job.state.Beat(1, MakeHealth("a", 1), T0() + absl::Seconds(2));
  EXPECT_EQ(beat.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(beat.message(), HasSubstr("generation 2"));
  // A new stream claiming generation 1.
  auto sink = std::make_shared<RecordingSink>();
  absl::StatusOr<uint64_t> open = job.state.OpenHealthStream(MakeHealth("a", 1), sink, T0());
  EXPECT_EQ(open.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(open.status().message(), HasSubstr("generation 1"));
  EXPECT_THAT(open.status().message(), HasSubstr("generation 2"));
  // The store of generation 1.
  absl::Status set = job.store.Set(1, v1::KEY_SCOPE_GENERATION, "nccl-id", "zombie");
  EXPECT_EQ(set.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(set.message(), HasSubstr("generation 2"));
  // A shard of generation 1.
  absl::StatusOr<v1::ShardAck> ack = testing::Report(job.state, testing::MakeShard(1, 10, 0, 2), T0());
  EXPECT_EQ(ack.status().code(), absl::StatusCode::kFailedPrecondition);
  // The new generation's store starts empty.
  JoinOutcome a = job.Join("a", 2, T0() + absl::Seconds(3), 2);
  ASSERT_TRUE(a->done() && a->result->ok());
  EXPECT_EQ(job.store.Get(2, v1::KEY_SCOPE_GENERATION, "nccl-id").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(JobStateHealth, StuckRankNamesNodeRankStepAndCollective) {
  JobConfig cfg = Config(1, 1);
  cfg.hang_timeout = absl::Seconds(60);
  Job job(cfg);
  ASSERT_TRUE(job.Join("a", 4, T0())->done());
  auto [sink, id] = job.Open("a", T0());
  auto beat = [&](int64_t step3, int seconds) {
    absl::Time t = T0() + absl::Seconds(seconds);
    std::vector<v1::RankHealth> ranks;
    for (int r = 0; r < 4; ++r) {
      v1::RankHealth h = MakeRank(r, v1::RANK_STATE_RUNNING, r == 3 ? step3 : step3 + seconds);
      h.set_collective("all_reduce");
      h.set_collective_seq(4521);
      ranks.push_back(h);
    }
    ASSERT_TRUE(job.state.Beat(id, MakeHealth("a", 1, ranks), t).ok());
    job.state.Tick(t);
  };
  // Rank 3 stays at step 5 while the others advance; beats keep the node alive.
  for (int s = 0; s <= 60; s += 5) beat(5, s);
  EXPECT_TRUE(job.Events(v1::JobEvent::KIND_RANK_STUCK).empty()) << "60 s is not past 60 s";
  beat(5, 65);
  std::vector<v1::JobEvent> stuck = job.Events(v1::JobEvent::KIND_RANK_STUCK);
  ASSERT_EQ(stuck.size(), 1u);
  EXPECT_EQ(stuck[0].node_id(), "a");
  EXPECT_EQ(stuck[0].rank(), 3);
  EXPECT_EQ(stuck[0].step(), 5);
  EXPECT_THAT(stuck[0].message(), HasSubstr("rank 3 (node a, local rank 3) stuck at step 5"));
  EXPECT_THAT(stuck[0].message(), HasSubstr("all_reduce #4521"));
  EXPECT_EQ(job.state.generation(), 2);
  ASSERT_FALSE(sink->commands().empty());
  EXPECT_EQ(sink->commands()[0].kind(), v1::Command::KIND_RESTART);
}

TEST(JobStateRestart, BudgetSpentFailsTheJobNamingTheFailure) {
  JobConfig cfg = Config(1, 1);
  cfg.max_restarts = 1;
  Job job(cfg);
  for (int generation = 1; generation <= 2; ++generation) {
    JoinOutcome a = job.Join("a", 1, T0(), generation);
    ASSERT_TRUE(a->done() && a->result->ok()) << a->status();
    auto [sink, id] = job.Open("a", T0());
    v1::NodeHealth fail = MakeHealth("a", generation, {MakeRank(0, v1::RANK_STATE_FAILED, 11)});
    fail.mutable_ranks(0)->set_exit_code(42);
    fail.mutable_ranks(0)->set_detail("CUDA error: an illegal memory access");
    ASSERT_TRUE(job.state.Beat(id, fail, T0()).ok());
    if (generation == 1) {
      EXPECT_EQ(job.state.phase(), v1::JOB_PHASE_RESTARTING);
      continue;
    }
    EXPECT_EQ(job.state.phase(), v1::JOB_PHASE_FAILED);
    v1::JobStatus status = job.state.Status(T0());
    EXPECT_THAT(status.reason(), HasSubstr("restart budget spent (1 of 1"));
    EXPECT_THAT(status.reason(), HasSubstr("rank 0 (node a, local rank 0) failed at step 11: exit code 42"));
    ASSERT_EQ(sink->commands().size(), 1u);
    EXPECT_EQ(sink->commands()[0].kind(), v1::Command::KIND_EXIT);
    EXPECT_FALSE(sink->commands()[0].success());
  }
  // Once ended: Joins are refused, the store too, and the end is journaled.
  JoinOutcome late = job.Join("z", 1, T0());
  EXPECT_EQ(late->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(job.store.Set(2, v1::KEY_SCOPE_JOB, "k", "v").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(job.journal.records().back().has_job_end());
  EXPECT_TRUE(job.state.AwaitEnd(T0()));
}

// The restart backoff is for crash loops only: a generation that completed a step restarts
// at once; one that failed before any step waits the backoff, doubled per such failure in
// a row, and progress resets it.
TEST(JobStateRestart, BackoffOnlyAfterAGenerationWithoutProgress) {
  JobConfig cfg = Config(1, 1);
  cfg.max_restarts = 10;
  cfg.restart_backoff = absl::Seconds(5);
  Job job(cfg);
  absl::Time now = T0();
  // Runs generation g: joins (held until it forms), opens the stream, optionally reports
  // a completed step, then a failure. Returns the next generation's held Join.
  auto fail_generation = [&](int64_t generation, bool progressed) {
    auto [sink, id] = job.Open("a", now);
    if (progressed) {
      ASSERT_TRUE(job.state.Beat(id, MakeHealth("a", generation, {MakeRank(0, v1::RANK_STATE_RUNNING, 0)}), now).ok());
    }
    now += absl::Seconds(1);
    ASSERT_TRUE(job.state.Beat(id, MakeHealth("a", generation, {MakeRank(0, v1::RANK_STATE_FAILED, progressed ? 0 : -1)}), now).ok());
    ASSERT_EQ(job.state.phase(), v1::JOB_PHASE_RESTARTING);
    ASSERT_EQ(job.state.generation(), generation + 1);
  };
  // Re-joins generation g at `now` and returns when it formed (or after `limit`).
  auto formed_after = [&](int64_t generation, absl::Duration limit) -> absl::Duration {
    const absl::Time start = now;
    JoinOutcome a = job.Join("a", 1, now, generation);
    while (!a->done() && now - start < limit) {
      now += absl::Milliseconds(100);
      job.state.Tick(now);
    }
    EXPECT_TRUE(a->done() && a->result->ok()) << "generation " << generation << " never formed";
    return now - start;
  };

  EXPECT_EQ(formed_after(1, absl::Seconds(1)), absl::ZeroDuration());
  fail_generation(1, /*progressed=*/true);
  EXPECT_EQ(formed_after(2, absl::Seconds(60)), absl::ZeroDuration()) << "it trained: at once";
  fail_generation(2, /*progressed=*/false);
  EXPECT_THAT(job.Events(v1::JobEvent::KIND_RESTART).back().message(),
              HasSubstr("no rank completed a step in generation 2: forming the next one after a "
                        "backoff of 5s"));
  EXPECT_EQ(formed_after(3, absl::Seconds(60)), absl::Seconds(5));
  fail_generation(3, /*progressed=*/false);
  EXPECT_THAT(job.Events(v1::JobEvent::KIND_RESTART).back().message(),
              HasSubstr("2 generations in a row"));
  EXPECT_EQ(formed_after(4, absl::Seconds(60)), absl::Seconds(10)) << "doubled";
  for (int g = 4; g <= 6; ++g) {
    fail_generation(g, /*progressed=*/false);
    formed_after(g + 1, absl::Seconds(200));
  }
  fail_generation(7, /*progressed=*/false);
  EXPECT_EQ(formed_after(8, absl::Seconds(200)), absl::Seconds(80)) << "capped at 16x";
  fail_generation(8, /*progressed=*/true);
  EXPECT_EQ(formed_after(9, absl::Seconds(60)), absl::ZeroDuration()) << "progress resets it";
  fail_generation(9, /*progressed=*/false);
  EXPECT_EQ(formed_after(10, absl::Seconds(60)), absl::Seconds(5));
}

TEST(JobStateEnd, AllRanksSucceededAndStop) {
  {
    Job job(Config(2, 2));
    auto sinks = FormAndOpen(job, {"a", "b"}, T0(), 2);
    ASSERT_TRUE(job.state.Beat(1, MakeHealth("a", 1, {MakeRank(0, v1::RANK_STATE_SUCCEEDED, 100),
                                                      MakeRank(1, v1::RANK_STATE_SUCCEEDED, 100)}),
                               T0()).ok());
    EXPECT_EQ(job.state.phase(), v1::JOB_PHASE_RUNNING) << "b's ranks still run";
    ASSERT_TRUE(job.state.Beat(2, MakeHealth("b", 1, {MakeRank(0, v1::RANK_STATE_SUCCEEDED, 100),
                                                      MakeRank(1, v1::RANK_STATE_SUCCEEDED, 100)}),
                               T0()).ok());
    EXPECT_EQ(job.state.phase(), v1::JOB_PHASE_SUCCEEDED);
    for (auto& [n, sink] : sinks) {
      ASSERT_EQ(sink->commands().size(), 1u);
      EXPECT_EQ(sink->commands()[0].kind(), v1::Command::KIND_EXIT);
      EXPECT_TRUE(sink->commands()[0].success());
    }
  }
  {
    Job job(Config(1, 1));
    auto sinks = FormAndOpen(job, {"a"}, T0());
    v1::JobStatus s = job.state.Stop("user asked", T0());
    EXPECT_EQ(s.phase(), v1::JOB_PHASE_STOPPED);
    EXPECT_EQ(sinks["a"]->commands().back().kind(), v1::Command::KIND_EXIT);
  }
}

TEST(JobStateRendezvous, CallbacksRunOutsideTheLock) {
  // A completion that calls back into the state would deadlock if it ran under the mutex.
  Job job(Config(2, 2));
  int64_t seen_generation = -1;
  job.state.Join(MakeJoin("a", 1), T0(), [&](absl::StatusOr<v1::JoinResponse> r) {
    seen_generation = job.state.generation();
    (void)job.state.Status(T0());
  });
  job.state.Join(MakeJoin("b", 1), T0(), [](absl::StatusOr<v1::JoinResponse>) {});
  EXPECT_EQ(seen_generation, 1);
}

TEST(JobStateReplay, RestartedCoordinatorReadoptsTheLastGeneration) {
  MemoryJournal journal;
  {
    JobStore store;
    JobEvents events;
    JobState state(Config(2, 2), &journal, &store, &events);
    auto a = std::make_shared<Outcome<v1::JoinResponse>>();
    auto b = std::make_shared<Outcome<v1::JoinResponse>>();
    testing::JoinInto(state, MakeJoin("a", 2), T0(), a);
    testing::JoinInto(state, MakeJoin("b", 2), T0(), b);
    auto sink = std::make_shared<RecordingSink>();
    uint64_t id = *state.OpenHealthStream(MakeHealth("a", 1), sink, T0());
    v1::NodeHealth fail = MakeHealth("a", 1, {MakeRank(0, v1::RANK_STATE_FAILED, 1)});
    ASSERT_TRUE(state.Beat(id, fail, T0()).ok());  // restart 1: generation 2
    testing::JoinInto(state, MakeJoin("a", 2, 2), T0(), a);
    testing::JoinInto(state, MakeJoin("b", 2, 2), T0(), b);
    ASSERT_EQ(state.generation(), 2);
    ASSERT_EQ(state.phase(), v1::JOB_PHASE_RUNNING);
  }
  // A new coordinator on the same journal.
  JobStore store;
  JobEvents events;
  JobConfig cfg = Config(2, 2);
  JobState state(cfg, &journal, &store, &events);
  absl::StatusOr<std::string> summary = state.Restore(journal.records(), T0() + absl::Minutes(5));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(*summary, HasSubstr("generation 2 RUNNING"));
  EXPECT_EQ(state.generation(), 2);
  EXPECT_EQ(state.phase(), v1::JOB_PHASE_RUNNING);
  EXPECT_EQ(state.Status(T0()).restarts(), 1);
  EXPECT_EQ(store.generation(), 2);
  // a reconnects its stream in time; b never does.
  auto sink = std::make_shared<RecordingSink>();
  absl::Time t = T0() + absl::Minutes(5) + absl::Seconds(10);
  absl::StatusOr<uint64_t> id = state.OpenHealthStream(MakeHealth("a", 2), sink, t);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(state.generation(), 2) << "re-adopted: no restart";
  for (int s = 15; s <= 45 && state.generation() == 2; s += 5) {
    t = T0() + absl::Minutes(5) + absl::Seconds(s);
    ASSERT_TRUE(state.Beat(*id, MakeHealth("a", 2), t).ok());
    state.Tick(t);
  }
  EXPECT_EQ(state.generation(), 3) << "b did not come back within the node timeout";
  ASSERT_FALSE(sink->commands().empty());
  EXPECT_EQ(sink->commands()[0].kind(), v1::Command::KIND_RESTART);
  EXPECT_EQ(state.Status(t).restarts(), 2);
}

TEST(JobStateReplay, AnEndedJobLaunchedAgainFormsAFreshGenerationKeepingItsCheckpoint) {
  MemoryJournal journal;
  {
    JobStore store;
    JobEvents events;
    JobState state(Config(1, 1), &journal, &store, &events);
    auto a = std::make_shared<Outcome<v1::JoinResponse>>();
    testing::JoinInto(state, MakeJoin("a", 1), T0(), a);
    ASSERT_EQ(state.generation(), 1);
    ASSERT_TRUE(testing::Report(state, testing::MakeShard(1, 250, 0, 1), T0()).ok());
    state.Stop("interrupted by SIGINT", T0());
    ASSERT_EQ(state.phase(), v1::JOB_PHASE_STOPPED);
  }
  {  // A coordinator restarted after a crash reports the end it recorded.
    JobStore store;
    JobEvents events;
    JobState state(Config(1, 1), &journal, &store, &events);
    ASSERT_TRUE(state.Restore(journal.records(), T0()).ok());
    EXPECT_EQ(state.phase(), v1::JOB_PHASE_STOPPED);
  }
  // colossus-launch run again: a fresh generation, a fresh budget, step 250 to resume from.
  JobStore store;
  JobEvents events;
  JobState state(Config(1, 1), &journal, &store, &events);
  absl::StatusOr<std::string> summary = state.Restore(journal.records(), T0(), true);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(*summary, HasSubstr("launched again"));
  EXPECT_EQ(state.phase(), v1::JOB_PHASE_WAITING);
  EXPECT_EQ(state.generation(), 2) << "generations stay monotonic across launches";
  auto a = std::make_shared<Outcome<v1::JoinResponse>>();
  testing::JoinInto(state, MakeJoin("a", 1), T0(), a);
  ASSERT_TRUE(a->done() && a->status().ok()) << (a->done() ? a->status() : absl::OkStatus());
  EXPECT_EQ(a->value().generation(), 2);
  EXPECT_EQ(a->value().resume_from().step(), 250);
  EXPECT_EQ(a->value().restarts(), 0);
  EXPECT_EQ(state.phase(), v1::JOB_PHASE_RUNNING);
  // The relaunch is journaled: a crash now replays as a live job, not as the old end.
  JobStore store2;
  JobEvents events2;
  JobState replayed(Config(1, 1), &journal, &store2, &events2);
  ASSERT_TRUE(replayed.Restore(journal.records(), T0()).ok());
  EXPECT_EQ(replayed.phase(), v1::JOB_PHASE_RUNNING);
  EXPECT_EQ(replayed.generation(), 2);
}

}  // namespace
}  // namespace colossus::launcher
