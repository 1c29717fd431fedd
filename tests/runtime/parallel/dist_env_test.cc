// The torchrun environment: what is accepted, and the error for each way it can be
// wrong (the variable named, with its value).
#include "colossus/parallel/dist_env.h"

#include <cstdlib>
#include <map>

#include "absl/strings/str_cat.h"
#include "colossus/parallel/process_group.h"
#include "colossus/trainer.h"
#include "dp_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "multiproc.h"

namespace colossus::parallel {
namespace {

using ::testing::HasSubstr;

EnvLookup From(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(DistEnv, NoWorldSizeIsOneProcessWithoutAGroup) {
  auto env = ReadDistEnv(From({}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_FALSE(env->has_value());
  env = ReadDistEnv(From({{"RANK", "0"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_FALSE(env->has_value());
}

TEST(DistEnv, ReadsTheTorchrunVariables) {
  auto env = ReadDistEnv(From({{"WORLD_SIZE", "4"}, {"RANK", "3"}, {"LOCAL_RANK", "1"},
                               {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"},
                               {"MASTER_PORT", "29500"}, {"COLOSSUS_GENERATION", "7"},
                               {"COLOSSUS_JOB_ID", "job42"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  ASSERT_TRUE(env->has_value());
  const DistEnv& e = **env;
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_addr, "127.0.0.1");
  EXPECT_EQ(e.master_port, 29500);
  EXPECT_EQ(e.generation, 7);
  EXPECT_EQ(e.job_id, "job42");
  EXPECT_EQ(e.gloo_hostname, "127.0.0.1") << "a loopback master means one machine";
  EXPECT_EQ(e.cuda_device, 1) << "the GPU is the local rank";
  EXPECT_THAT(e.DebugString(), HasSubstr("rank 3 of 4"));
}

TEST(DistEnv, DefaultsAndPinnedDevices) {
  // LOCAL_RANK defaults to RANK; one rank needs no rendezvous address; a single device
  // in CUDA_VISIBLE_DEVICES is cuda:0 whatever the local rank.
  auto env = ReadDistEnv(From({{"WORLD_SIZE", "1"}, {"RANK", "0"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ((*env)->local_rank, 0);
  env = ReadDistEnv(From({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "localhost"},
                          {"MASTER_PORT", "1234"}, {"CUDA_VISIBLE_DEVICES", "5"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ((*env)->local_rank, 1);
  EXPECT_EQ((*env)->cuda_device, 0);
  // A coordinator replaces MASTER_*.
  env = ReadDistEnv(From({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"COLOSSUS_COORDINATOR", "c:1"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ((*env)->coordinator, "c:1");
  // COLOSSUS_GLOO_HOSTNAME wins.
  env = ReadDistEnv(From({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "10.0.0.1"},
                          {"MASTER_PORT", "1234"}, {"COLOSSUS_GLOO_HOSTNAME", "10.0.0.2"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ((*env)->gloo_hostname, "10.0.0.2");
}

struct BadEnv {
  std::map<std::string, std::string> vars;
  std::string message;  // a substring the error must contain
};

TEST(DistEnv, EveryMistakeNamesTheVariable) {
  const std::map<std::string, std::string> ok = {
      {"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&](std::map<std::string, std::string> changes,
                  std::vector<std::string> erase = {}) {
    auto v = ok;
    for (auto& [k, val] : changes) v[k] = val;
    for (const auto& k : erase) v.erase(k);
    return v;
  };
  const std::vector<BadEnv> cases = {
      {with({{"WORLD_SIZE", "two"}}), "WORLD_SIZE='two' is not an integer"},
      {with({{"WORLD_SIZE", "0"}}), "WORLD_SIZE=0 must be between 1"},
      {with({}, {"RANK"}), "WORLD_SIZE=2 is set but RANK is not"},
      {with({{"RANK", "2"}}), "RANK=2 is out of range for WORLD_SIZE=2 (ranks are 0..1)"},
      {with({{"RANK", "-1"}}), "RANK=-1 is out of range"},
      {with({{"RANK", "1x"}}), "RANK='1x' is not an integer"},
      {with({}, {"MASTER_ADDR"}), "needs MASTER_ADDR"},
      {with({}, {"MASTER_PORT"}), "needs MASTER_PORT"},
      {with({{"MASTER_PORT", "70000"}}), "MASTER_PORT=70000 is not a TCP port"},
      {with({{"MASTER_PORT", "http"}}), "MASTER_PORT='http' is not an integer"},
      {with({{"LOCAL_RANK", "5"}}), "LOCAL_RANK=5 is out of range"},
      {with({{"LOCAL_WORLD_SIZE", "3"}}), "LOCAL_WORLD_SIZE=3 must be between 1 and WORLD_SIZE=2"},
      {with({{"LOCAL_WORLD_SIZE", "1"}, {"RANK", "1"}}), "LOCAL_RANK is not set and RANK=1"},
      {with({{"COLOSSUS_GENERATION", "-2"}}), "COLOSSUS_GENERATION=-2 must be >= 0"},
      {{{"RANK", "3"}}, "RANK='3' is set but WORLD_SIZE is not"},
  };
  for (const BadEnv& c : cases) {
    auto env = ReadDistEnv(From(c.vars));
    ASSERT_FALSE(env.ok()) << "accepted: " << c.message;
    EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(env.status().message()), HasSubstr(c.message));
  }
}

// The trainer refuses a bad environment before building anything, with the same
// message; COLOSSUS_COORDINATOR without a coordinator store linked in is named too; a
// WORLD_SIZE of 1 trains through a one-rank group without any rendezvous address.
// (In a child process: setenv, and the trainer's threads, stay out of the test runner.)
TEST(DistEnv, TheTrainerReportsABadEnvironmentAndTheMissingCoordinatorStore) {
  TrainConfig c = testing::TinyDpConfig(testing::MakeCorpus("dp_badenv"));
  c.steps = 2;
  c.val_data.clear();
  c.output_dir = ::testing::TempDir() + "/dp_badenv/out";
  const auto results = comm::testing::RunRanks(
      1,
      [&](const comm::testing::RankEnv&) -> absl::Status {
        setenv("WORLD_SIZE", "2", 1);
        unsetenv("RANK");
        auto t = Trainer::Create(c);
        if (t.ok() || std::string(t.status().message()).find("RANK is not") == std::string::npos) {
          return absl::InternalError(absl::StrCat("missing RANK: ", t.status().ToString()));
        }
        setenv("RANK", "1", 1);
        setenv("COLOSSUS_COORDINATOR", "127.0.0.1:1", 1);
        t = Trainer::Create(c);
        if (t.ok() || t.status().code() != absl::StatusCode::kFailedPrecondition ||
            std::string(t.status().message()).find("COLOSSUS_COORDINATOR=127.0.0.1:1") ==
                std::string::npos) {
          return absl::InternalError(absl::StrCat("coordinator: ", t.status().ToString()));
        }
        unsetenv("COLOSSUS_COORDINATOR");
        setenv("WORLD_SIZE", "1", 1);
        setenv("RANK", "0", 1);
        TrainConfig zero = c;
        zero.zero = 1;
        t = Trainer::Create(zero);
        if (!t.ok()) return t.status();
        if ((*t)->ranks() != 1 || (*t)->data_parallel() == nullptr) {
          return absl::InternalError("WORLD_SIZE=1 should make a one-rank group");
        }
        auto s = (*t)->Run();
        return s.ok() ? absl::OkStatus() : s.status();
      },
      absl::Seconds(60));
  comm::testing::ExpectAllOk(results);
}

}  // namespace
}  // namespace colossus::parallel
