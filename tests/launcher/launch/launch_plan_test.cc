// The launch plan (agent command lines, local and over ssh; the coordinator's options)
// and what the launcher prints (status line, failure summary), from manifests in memory.
#include "launch_plan.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "job_view.h"

namespace colossus::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

Manifest Parse(const std::string& yaml) {
  ManifestOptions options;
  options.working_dir = "/work";
  options.is_local = [](std::string_view host) { return host == "here"; };
  options.local_hostname = "launcher-host";
  auto m = ParseManifest(yaml, "/jobs/job.yaml", options);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : Manifest{};
}

constexpr char kTwoNodes[] = R"(
version: 1
job: {name: j, run_dir: /runs/j}
nodes:
  - {name: n0, host: here, gpus: [0, 1], env: {A: node}}
  - {name: n1, host: far, gpus: 2}
worker:
  command: ["/bin/train", "--config", "it's.yaml"]
  env: {A: worker, B: "2"}
ssh: {command: [ssh, -i, /k, -o, BatchMode=yes], user: root, port: 2222}
)";

TEST(LaunchPlanTest, LocalAgentsRunDirectlyRemoteOnesOverSsh) {
  Manifest m = Parse(kTwoNodes);
  auto plan = PlanAgents(m, {.self = "/bin/colossus-launch", .coordinator = "launcher-host:7000",
                             .token_file = "/runs/j/token", .extra_worker_args = {"--steps", "5"}});
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_FALSE(plan[0].remote);
  const std::string local = ShellJoin(plan[0].argv);
  EXPECT_THAT(local, HasSubstr("/bin/colossus-launch --agent --coordinator launcher-host:7000 --job-id j "
                               "--node-id n0"));
  EXPECT_THAT(local, HasSubstr("--workers 2 --gpus 0,1"));
  EXPECT_THAT(local, HasSubstr("--token-file /runs/j/token"));
  // worker.env first, the node's after it (the agent applies them in order: the node wins).
  EXPECT_THAT(local, HasSubstr("--env A=worker --env B=2 --env A=node"));
  EXPECT_THAT(local, HasSubstr("-- /bin/train --config 'it'\\''s.yaml' --steps 5"));

  EXPECT_TRUE(plan[1].remote);
  ASSERT_GE(plan[1].argv.size(), 2u);
  EXPECT_THAT(std::vector<std::string>(plan[1].argv.begin(), plan[1].argv.end() - 1),
              ElementsAre("ssh", "-i", "/k", "-o", "BatchMode=yes", "-p", "2222", "-l", "root", "far"));
  const std::string remote = plan[1].argv.back();
  EXPECT_THAT(remote, HasSubstr("--token-stdin"));
  EXPECT_THAT(remote, Not(HasSubstr("--token-file")));
  EXPECT_THAT(remote, HasSubstr("--gpus 0,1 "));
  // The remote command is one string for the remote shell, every word quoted once.
  EXPECT_THAT(remote, HasSubstr("'it'\\''s.yaml'"));
}

TEST(LaunchPlanTest, CoordinatorOptionsFollowTheManifest) {
  Manifest m = Parse(std::string(kTwoNodes) + R"(
restart: {max_restarts: 5, elastic: {min_nodes: 1, max_nodes: 2}}
health: {heartbeat_interval: 500ms, node_timeout: 7s, hang_timeout: 2m}
)");
  CoordinatorOptions o = CoordinatorOptionsFor(m, "tok");
  EXPECT_EQ(o.job_id, "j");
  EXPECT_EQ(o.token, "tok");
  EXPECT_EQ(o.run_dir, "/runs/j");
  EXPECT_EQ(o.min_nodes, 1);
  EXPECT_EQ(o.max_nodes, 2);
  EXPECT_EQ(o.max_restarts, 5);
  EXPECT_EQ(o.heartbeat_interval, absl::Milliseconds(500));
  EXPECT_EQ(o.node_timeout, absl::Seconds(7));
  EXPECT_EQ(o.hang_timeout, absl::Minutes(2));
  // Not elastic: every node, and no settle wait.
  Manifest fixed = Parse(kTwoNodes);
  CoordinatorOptions f = CoordinatorOptionsFor(fixed, "tok");
  EXPECT_EQ(f.min_nodes, 2);
  EXPECT_EQ(f.max_nodes, 2);
  EXPECT_EQ(f.settle, absl::ZeroDuration());
}

TEST(LaunchPlanTest, ShellQuote) {
  EXPECT_EQ(ShellQuote("plain/path-1.0:x=y"), "plain/path-1.0:x=y");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("a b"), "'a b'");
  EXPECT_EQ(ShellQuote("$HOME"), "'$HOME'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
}

v1::JobStatus RunningStatus() {
  v1::JobStatus s;
  s.set_job_id("j");
  s.set_phase(v1::JOB_PHASE_RUNNING);
  s.set_generation(2);
  s.set_restarts(1);
  s.set_max_restarts(3);
  s.set_nodes_alive(2);
  s.set_world_size(4);
  s.set_min_step(140);
  s.set_max_step(141);
  for (int n = 0; n < 2; ++n) {
    v1::NodeStatus* node = s.add_nodes();
    node->mutable_assignment()->set_node_id(n == 0 ? "a" : "b");
    node->mutable_assignment()->set_first_rank(2 * n);
    node->set_alive(true);
    for (int l = 0; l < 2; ++l) {
      v1::RankHealth* r = node->add_ranks();
      r->set_local_rank(l);
      r->set_state(v1::RANK_STATE_RUNNING);
      r->set_loss(2.0f + n);
      r->set_tokens_per_s(3000);
    }
  }
  return s;
}

TEST(JobViewTest, StatusLine) {
  EXPECT_EQ(StatusLine(RunningStatus(), absl::Seconds(83)),
            "gen 2 | running | nodes 2/2 | ranks 4 | step 141 | loss 2.500 | 12.0k tok/s | "
            "restarts 1/3 | 1m23s");
}

// A job whose ranks report what they train to: the line shows step done/total and the ETA.
v1::JobStatus WithTotal(v1::JobStatus s, int64_t total) {
  for (v1::NodeStatus& n : *s.mutable_nodes()) {
    for (v1::RankHealth& r : *n.mutable_ranks()) r.set_total_steps(total);
  }
  return s;
}

v1::JobStatus AtStep(v1::JobStatus s, int64_t generation, int64_t min_step) {
  s.set_generation(generation);
  s.set_phase(v1::JOB_PHASE_RUNNING);
  s.set_min_step(min_step);
  s.set_max_step(min_step + 1);
  return s;
}

TEST(JobViewTest, StatusLineShowsTotalAndEta) {
  EXPECT_EQ(StatusLine(WithTotal(RunningStatus(), 1500), absl::Seconds(83), absl::Seconds(250)),
            "gen 2 | running | nodes 2/2 | ranks 4 | step 141/1500 | loss 2.500 | 12.0k tok/s | "
            "ETA 4m10s | restarts 1/3 | 1m23s");
}

TEST(JobViewTest, EtaFollowsTheRecentStepRate) {
  const v1::JobStatus job = WithTotal(RunningStatus(), 1000);
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  EtaEstimator eta(absl::Seconds(60));
  EXPECT_FALSE(eta.Remaining().has_value()) << "no samples yet";
  eta.Observe(AtStep(job, 2, 99), t0);  // 100 steps done
  EXPECT_FALSE(eta.Remaining().has_value()) << "one sample has no rate";
  eta.Observe(AtStep(job, 2, 109), t0 + absl::Seconds(1));
  EXPECT_FALSE(eta.Remaining().has_value()) << "1 s is too short to trust";
  eta.Observe(AtStep(job, 2, 119), t0 + absl::Seconds(2));
  // 20 steps in 2 s: 880 left take 88 s.
  ASSERT_TRUE(eta.Remaining().has_value());
  EXPECT_EQ(*eta.Remaining(), absl::Seconds(88));
  // The rate is the recent one: after 2 minutes at 5 steps/s, the old 10 steps/s is gone.
  for (int i = 1; i <= 120; ++i) eta.Observe(AtStep(job, 2, 119 + 5 * i), t0 + absl::Seconds(2 + i));
  ASSERT_TRUE(eta.Remaining().has_value());
  EXPECT_EQ(*eta.Remaining(), absl::Seconds((1000 - 720) / 5));
}

TEST(JobViewTest, EtaRestartsItsMeasurementAfterARestart) {
  const v1::JobStatus job = WithTotal(RunningStatus(), 1000);
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  EtaEstimator eta;
  eta.Observe(AtStep(job, 2, 199), t0);
  eta.Observe(AtStep(job, 2, 299), t0 + absl::Seconds(10));
  ASSERT_TRUE(eta.Remaining().has_value());
  // Generation 3 resumed from the checkpoint at step 250, 30 s later: the recovery gap is
  // not step time, so there is no estimate until the new generation has its own rate.
  eta.Observe(AtStep(job, 3, 249), t0 + absl::Seconds(40));
  EXPECT_FALSE(eta.Remaining().has_value());
  eta.Observe(AtStep(job, 3, 269), t0 + absl::Seconds(42));
  ASSERT_TRUE(eta.Remaining().has_value());
  EXPECT_EQ(*eta.Remaining(), absl::Seconds(73));  // 730 left at 10 steps/s
  // Without a total there is nothing to estimate.
  EtaEstimator no_total;
  no_total.Observe(AtStep(RunningStatus(), 2, 10), t0);
  no_total.Observe(AtStep(RunningStatus(), 2, 50), t0 + absl::Seconds(5));
  EXPECT_FALSE(no_total.Remaining().has_value());
}

TEST(JobViewTest, FailureSummaryNamesNodeRankCauseAndLastLines) {
  v1::JobStatus s = RunningStatus();
  s.set_phase(v1::JOB_PHASE_FAILED);
  s.set_reason("restart budget spent: rank 3 failed");
  v1::RankHealth* r = s.mutable_nodes(1)->mutable_ranks(1);
  r->set_state(v1::RANK_STATE_FAILED);
  r->set_signal(9);
  r->set_detail("rank 3 (pid 5) killed by signal 9 (SIGKILL) on node b\nCUDA out of memory\nabort");
  const std::string text = FailureSummary(s, "/runs/j");
  EXPECT_THAT(text, HasSubstr("job j failed in generation 2 after 1 restart(s): restart budget spent"));
  EXPECT_THAT(text, HasSubstr("node b, rank 3: killed by signal 9\n    | CUDA out of memory\n    | abort\n"));
  EXPECT_THAT(text, HasSubstr("log: /runs/j/logs/gen2/rank3.{out,err} on b"));
  EXPECT_THAT(text, Not(HasSubstr("rank 0")));
}

}  // namespace
}  // namespace colossus::launcher
