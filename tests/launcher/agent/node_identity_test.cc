// Node identity from flags, COLOSSUS_* and SLURM_* (precedence and errors), Slurm host
// lists, and the per-rank status file.
#include "colossus/launcher/node_identity.h"

#include <map>

#include "colossus/launcher/status_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace colossus::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

EnvLookupFn Env(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(NodeIdentityTest, FlagsWinOverEnvironment) {
  NodeIdentityFlags flags{.node_id = "n1", .address = "10.0.0.1", .workers = 0, .gpus = "2,3",
                          .coordinator = "c:7000"};
  auto id = ResolveNodeIdentity(
      flags, Env({{"COLOSSUS_NODE_ID", "env-node"}, {"COLOSSUS_COORDINATOR", "e:1"}}), "host");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->node_id, "n1");
  EXPECT_EQ(id->address, "10.0.0.1");
  EXPECT_THAT(id->gpus, ElementsAre(2, 3));
  EXPECT_EQ(id->workers, 2);
  EXPECT_EQ(id->coordinator, "c:7000");
  EXPECT_FALSE(id->from_slurm);
}

TEST(NodeIdentityTest, EnvironmentThenHostnameDefaults) {
  auto id = ResolveNodeIdentity({}, Env({{"COLOSSUS_COORDINATOR", "c:7000"}, {"COLOSSUS_WORKERS", "3"}}),
                                "myhost");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->node_id, "myhost");
  EXPECT_EQ(id->address, "myhost");
  EXPECT_EQ(id->workers, 3);
  EXPECT_TRUE(id->gpus.empty());
  // A GPU count means indices 0..n-1.
  id = ResolveNodeIdentity({.gpus = "4", .coordinator = "c:1"}, Env({}), "h");
  ASSERT_TRUE(id.ok());
  EXPECT_THAT(id->gpus, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(id->workers, 4);
}

TEST(NodeIdentityTest, SlurmSuppliesIdentityAndCoordinatorHost) {
  auto id = ResolveNodeIdentity(
      {.coordinator = ":29400"},
      Env({{"SLURM_JOB_ID", "77"}, {"SLURM_PROCID", "3"}, {"SLURM_LOCALID", "1"},
           {"SLURM_NTASKS", "4"}, {"SLURM_NNODES", "2"}, {"SLURMD_NODENAME", "gpu004"},
           {"SLURM_JOB_NODELIST", "gpu[003-004]"}, {"SLURM_GPUS_ON_NODE", "2"}}),
      "ignored");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_TRUE(id->from_slurm);
  // Two agents per node: the local id keeps them apart.
  EXPECT_EQ(id->node_id, "gpu004-1");
  EXPECT_EQ(id->address, "gpu004");
  EXPECT_EQ(id->coordinator, "gpu003:29400");
  EXPECT_EQ(id->workers, 2);
  EXPECT_THAT(id->gpus, ElementsAre(0, 1));
  // One agent per node: the node name alone; Slurm's CUDA_VISIBLE_DEVICES gives the GPUs.
  id = ResolveNodeIdentity({.coordinator = "c:1"},
                           Env({{"SLURM_JOB_ID", "77"}, {"SLURM_NTASKS", "2"}, {"SLURM_NNODES", "2"},
                                {"SLURMD_NODENAME", "gpu003"}, {"CUDA_VISIBLE_DEVICES", "4,5"}}),
                           "x");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->node_id, "gpu003");
  EXPECT_THAT(id->gpus, ElementsAre(4, 5));
  EXPECT_EQ(id->workers, 2);
}

TEST(NodeIdentityTest, ErrorsNameTheSetting) {
  auto id = ResolveNodeIdentity({}, Env({}), "h");
  EXPECT_THAT(id.status().message(), HasSubstr("--coordinator HOST:PORT"));
  id = ResolveNodeIdentity({.gpus = "0,x", .coordinator = "c:1"}, Env({}), "h");
  EXPECT_THAT(id.status().message(), HasSubstr("--gpus=0,x: 'x' is not a GPU index"));
  id = ResolveNodeIdentity({.gpus = "1,1", .coordinator = "c:1"}, Env({}), "h");
  EXPECT_THAT(id.status().message(), HasSubstr("GPU 1 is listed twice"));
  id = ResolveNodeIdentity({.workers = 3, .gpus = "0,1", .coordinator = "c:1"}, Env({}), "h");
  EXPECT_THAT(id.status().message(), HasSubstr("3 workers but 2 GPUs"));
  id = ResolveNodeIdentity({}, Env({{"COLOSSUS_COORDINATOR", "c:1"}, {"COLOSSUS_WORKERS", "-2"}}), "h");
  EXPECT_THAT(id.status().message(), HasSubstr("COLOSSUS_WORKERS=-2"));
  id = ResolveNodeIdentity({.coordinator = ":7"}, Env({}), "h");
  EXPECT_THAT(id.status().message(), HasSubstr("SLURM_JOB_NODELIST is not set"));
}

TEST(NodeIdentityTest, FirstSlurmHost) {
  EXPECT_EQ(*FirstSlurmHost("node1"), "node1");
  EXPECT_EQ(*FirstSlurmHost("a,b"), "a");
  EXPECT_EQ(*FirstSlurmHost("gpu[003-010,012],cpu1"), "gpu003");
  EXPECT_EQ(*FirstSlurmHost("cpu1,gpu[003-010]"), "cpu1");
  EXPECT_EQ(*FirstSlurmHost("n[7,9]-ib"), "n7-ib");
  EXPECT_FALSE(FirstSlurmHost("").ok());
  EXPECT_FALSE(FirstSlurmHost("n[1-2").ok());
}

TEST(RankStatusFileTest, RoundTripAndTolerance) {
  testing::TempDir dir;
  const std::string path = RankStatusPath(dir.path(), 2, 5);
  EXPECT_EQ(path, dir.path() + "/status/gen2/rank5.json");
  EXPECT_FALSE(ReadRankStatus(path).has_value());
  ASSERT_TRUE(WriteRankStatus(path, {.step = 12, .total_steps = 1500, .loss = 2.5f, .tokens_per_s = 1000.5,
                                     .collective_seq = 40, .collective = "all_reduce"})
                  .ok());
  auto r = ReadRankStatus(path);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->step, 12);
  EXPECT_EQ(r->total_steps, 1500);
  EXPECT_FLOAT_EQ(r->loss, 2.5f);
  EXPECT_DOUBLE_EQ(r->tokens_per_s, 1000.5);
  EXPECT_EQ(r->collective_seq, 40);
  EXPECT_EQ(r->collective, "all_reduce");
  // Half-written or foreign content reads as no status; missing fields keep defaults.
  { std::ofstream(path) << "{\"step\": 3"; }
  EXPECT_FALSE(ReadRankStatus(path).has_value());
  { std::ofstream(path) << "{\"step\": 3, \"loss\": \"high\"}"; }
  r = ReadRankStatus(path);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->step, 3);
  EXPECT_EQ(r->loss, 0.0f);
}

}  // namespace
}  // namespace colossus::launcher
