// The client and CoordinatorStore against the real coordinator (CoordinatorServer,
// in-process): comm's Store contract and a Gloo group over it, the rendezvous, fencing
// after a restart seen through the client's health stream, and a held wait carried
// across a coordinator restart by the client's retries.
#include <filesystem>
#include <thread>

#include "colossus/launcher/coordinator.h"
#include "colossus/launcher/coordinator_client.h"
#include "colossus/launcher/coordinator_store.h"
#include "fake_coordinator.h"  // UnusedPort
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store_contract.h"

namespace colossus::launcher::testing {
namespace {

using ::testing::HasSubstr;

// Run directories, removed when the test program ends (after every server is gone).
class RunDirs : public ::testing::Environment {
 public:
  static std::string Fresh(const std::string& name) {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() /
        ("colossus-client-it-" + name + "-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    dirs().push_back(dir);
    return dir.string();
  }
  void TearDown() override {
    for (const auto& d : dirs()) std::filesystem::remove_all(d);
  }

 private:
  static std::vector<std::filesystem::path>& dirs() {
    static std::vector<std::filesystem::path> d;
    return d;
  }
};
const auto* const kRunDirs = ::testing::AddGlobalTestEnvironment(new RunDirs);

std::string FreshDir(const std::string& name) { return RunDirs::Fresh(name); }

CoordinatorOptions ServerOptions(const std::string& run_dir, int nodes) {
  CoordinatorOptions o;
  o.job_id = "it-job";
  o.token = "it-token";
  o.run_dir = run_dir;
  o.min_nodes = o.max_nodes = nodes;
  o.cq_threads = 2;
  o.log = [](const std::string&) {};
  return o;
}

CoordinatorClientOptions ClientOptions(const std::string& address) {
  CoordinatorClientOptions o;
  o.channel.target = address;
  o.job_id = "it-job";
  o.token = "it-token";
  o.call_timeout = absl::Seconds(10);
  o.retry.initial_backoff = absl::Milliseconds(20);
  o.retry.max_backoff = absl::Milliseconds(200);
  o.retry.max_elapsed = absl::Seconds(5);
  return o;
}

std::shared_ptr<CoordinatorClient> NewClient(const CoordinatorClientOptions& o) {
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> c = CoordinatorClient::Create(o);
  if (!c.ok()) {
    ADD_FAILURE() << c.status();
    std::abort();
  }
  return std::shared_ptr<CoordinatorClient>(*std::move(c));
}

v1::JoinRequest JoinOf(const std::string& node, int gpus) {
  v1::JoinRequest r;
  r.set_node_id(node);
  r.set_address(node + ".local");
  r.set_local_world_size(gpus);
  r.set_incarnation("inc-" + node);
  r.set_timeout_ms(20000);
  return r;
}

// A one-node job whose generation has formed; Fresh() gives stores of that generation.
class RealFactory {
 public:
  RealFactory() {
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
        CoordinatorServer::Start(ServerOptions(FreshDir("store"), 1));
    if (!server.ok()) {
      ADD_FAILURE() << server.status();
      std::abort();
    }
    server_ = *std::move(server);
    agent_ = NewClient(ClientOptions(server_->address()));
    absl::StatusOr<v1::JoinResponse> joined = agent_->Join(JoinOf("node-0", 8));
    if (!joined.ok()) {
      ADD_FAILURE() << joined.status();
      std::abort();
    }
    generation_ = joined->generation();
  }
  std::shared_ptr<comm::Store> Fresh() {
    CoordinatorClientOptions o = ClientOptions(server_->address());
    o.initial_generation = generation_;
    return std::make_shared<CoordinatorStore>(NewClient(o));
  }

 private:
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<CoordinatorClient> agent_;
  int64_t generation_ = 0;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Real, StoreContractTest, RealFactory);


TEST(CoordinatorIntegrationTest, ThreeAgentsRendezvousInNodeIdOrderAndShareAKey) {
  auto server = CoordinatorServer::Start(ServerOptions(FreshDir("rdv"), 3));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::vector<std::string> nodes = {"gpu-c", "gpu-a", "gpu-b"};
  std::vector<absl::StatusOr<v1::JoinResponse>> got(3, absl::UnknownError(""));
  std::vector<std::shared_ptr<CoordinatorClient>> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(NewClient(ClientOptions((*server)->address())));
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] { got[i] = clients[i]->Join(JoinOf(nodes[i], 2 + i)); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(got[i].ok()) << got[i].status();
  // Order gpu-a (3 GPUs), gpu-b (4), gpu-c (2).
  EXPECT_EQ(got[1]->assignment().first_rank(), 0);
  EXPECT_EQ(got[2]->assignment().first_rank(), 3);
  EXPECT_EQ(got[0]->assignment().first_rank(), 7);
  EXPECT_EQ(got[0]->world_size(), 9);
  EXPECT_EQ(got[0]->master_address(), "gpu-a.local");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(clients[i]->generation(), got[i]->generation());

  // Every "rank" waits for the id one of them sets.
  CoordinatorStore store_a(clients[0]), store_b(clients[1]);
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(100));
    EXPECT_TRUE(store_b.Set("nccl/id", "id-bytes").ok());
  });
  absl::StatusOr<std::string> id = store_a.WaitGet("nccl/id", absl::Seconds(10));
  setter.join();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "id-bytes");
}

TEST(CoordinatorIntegrationTest, AWrongTokenIsRefusedNamingTheCoordinator) {
  auto server = CoordinatorServer::Start(ServerOptions(FreshDir("auth"), 1));
  ASSERT_TRUE(server.ok()) << server.status();
  CoordinatorClientOptions o = ClientOptions((*server)->address());
  o.token = "not-it";
  absl::StatusOr<v1::JobStatus> st = NewClient(o)->GetJobStatus();
  EXPECT_EQ(st.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("coordinator " + (*server)->address()));
  o.token = "it-token";
  o.job_id = "another-job";
  EXPECT_EQ(NewClient(o)->GetJobStatus().status().code(), absl::StatusCode::kNotFound);
}

v1::NodeHealth Ranks(v1::RankState state, int64_t step, int n = 2) {
  v1::NodeHealth beat;
  for (int r = 0; r < n; ++r) {
    v1::RankHealth* h = beat.add_ranks();
    h->set_local_rank(r);
    h->set_state(state);
    h->set_step(step);
  }
  return beat;
}

// A rank fails: the coordinator moves to the next generation, sends RESTART on the
// health stream and ends it (the client reports that end as OK, not as a lost link);
// the old generation's store calls are fenced; re-joined, the agent works again.
TEST(CoordinatorIntegrationTest, ARestartIsDeliveredAndTheOldGenerationIsFenced) {
  auto server = CoordinatorServer::Start(ServerOptions(FreshDir("restart"), 1));
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = NewClient(ClientOptions((*server)->address()));
  absl::StatusOr<v1::JoinResponse> joined = client->Join(JoinOf("node-0", 2));
  ASSERT_TRUE(joined.ok()) << joined.status();
  const int64_t g = joined->generation();
  CoordinatorStore store(client);
  ASSERT_TRUE(store.Set("addr/0", "old").ok());

  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::Command> commands;
  bool ended = false;
  absl::Status end_status = absl::UnknownError("");
  absl::StatusOr<std::unique_ptr<HealthStream>> hs = client->OpenHealthStream(
      "node-0", g, Ranks(v1::RANK_STATE_RUNNING, 1),
      [&](const v1::Command& c) {
        std::lock_guard<std::mutex> lock(mu);
        commands.push_back(c);
        cv.notify_all();
      },
      [&](const absl::Status& s) {
        std::lock_guard<std::mutex> lock(mu);
        ended = true;
        end_status = s;
        cv.notify_all();
      });
  ASSERT_TRUE(hs.ok()) << hs.status();
  v1::NodeHealth failed = Ranks(v1::RANK_STATE_RUNNING, 2);
  failed.mutable_ranks(1)->set_state(v1::RANK_STATE_FAILED);
  failed.mutable_ranks(1)->set_exit_code(3);
  ASSERT_TRUE((*hs)->Send(failed).ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return ended; }));
  }
  EXPECT_TRUE(end_status.ok()) << end_status;
  ASSERT_FALSE(commands.empty());
  const v1::Command& restart = commands.back();
  EXPECT_EQ(restart.kind(), v1::Command::KIND_RESTART);
  EXPECT_EQ(restart.generation(), g + 1);

  // A zombie of generation g.
  absl::Status fenced = store.Set("addr/0", "zombie");
  EXPECT_EQ(fenced.code(), absl::StatusCode::kFailedPrecondition) << fenced;
  EXPECT_THAT(std::string(fenced.message()), HasSubstr(std::to_string(g)));

  client->set_generation(restart.generation());
  absl::StatusOr<v1::JoinResponse> rejoined = client->Join(JoinOf("node-0", 2));
  ASSERT_TRUE(rejoined.ok()) << rejoined.status();
  EXPECT_EQ(rejoined->generation(), g + 1);
  EXPECT_EQ(rejoined->restarts(), 1);
  // GENERATION keys of g are gone; the new generation's store works.
  EXPECT_EQ(store.Get("addr/0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.Set("addr/0", "new").ok());
  hs->reset();
}

// A held StoreWait outlives a coordinator restart: the client retries against the
// successor (same address and run directory), where another worker then sets the key.
TEST(CoordinatorIntegrationTest, AHeldWaitIsCarriedAcrossACoordinatorRestart) {
  const std::string dir = FreshDir("successor");
  CoordinatorOptions so = ServerOptions(dir, 1);
  so.listen_address = "127.0.0.1:" + std::to_string(UnusedPort());
  auto server = CoordinatorServer::Start(so);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = NewClient(ClientOptions((*server)->address()));
  absl::StatusOr<v1::JoinResponse> joined = client->Join(JoinOf("node-0", 1));
  ASSERT_TRUE(joined.ok()) << joined.status();
  CoordinatorStore store(client, v1::KEY_SCOPE_JOB);

  absl::StatusOr<std::string> waited = absl::UnknownError("");
  std::thread waiter([&] { waited = store.WaitGet("late/key", absl::Seconds(20)); });
  absl::SleepFor(absl::Milliseconds(200));
  (*server)->Shutdown();
  server->reset();
  absl::SleepFor(absl::Milliseconds(300));
  auto successor = CoordinatorServer::Start(so);
  ASSERT_TRUE(successor.ok()) << successor.status();
  CoordinatorClientOptions o = ClientOptions((*successor)->address());
  o.initial_generation = client->generation();
  CoordinatorStore other(NewClient(o), v1::KEY_SCOPE_JOB);
  ASSERT_TRUE(other.Set("late/key", "made it").ok());
  waiter.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(*waited, "made it");
}

}  // namespace
}  // namespace colossus::launcher::testing

// comm's own Store contract, the same assertions its in-memory and TCP stores pass.
namespace colossus::comm::testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Real, StoreContract, colossus::launcher::testing::RealFactory);
}  // namespace colossus::comm::testing
