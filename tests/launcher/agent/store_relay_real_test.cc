// The store relay in front of the real coordinator (CoordinatorServer, in-process): the
// Store contract, a fenced generation reaching every coalesced waiter with the
// coordinator's status and message, and a wait carried across a coordinator restart by
// the relay's own retries.
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "colossus/launcher/coordinator.h"
#include "fake_coordinator.h"  // UnusedPort
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "relay_test_util.h"
#include "store_contract.h"

namespace colossus::launcher::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kJob[] = "relay-job";
constexpr char kToken[] = "relay-token";

CoordinatorOptions ServerOptions(const std::string& run_dir) {
  CoordinatorOptions o;
  o.job_id = kJob;
  o.token = kToken;
  o.run_dir = run_dir;
  o.min_nodes = o.max_nodes = 1;
  o.cq_threads = 2;
  o.log = [](const std::string&) {};
  return o;
}

v1::JoinRequest JoinOf(const std::string& node, int workers) {
  v1::JoinRequest r;
  r.set_node_id(node);
  r.set_address(node + ".local");
  r.set_local_world_size(workers);
  r.set_incarnation("inc-" + node);
  r.set_timeout_ms(20000);
  return r;
}

// A one-node job whose generation has formed, and its node's relay.
class RealRelayFactory {
 public:
  explicit RealRelayFactory(const std::string& listen = "127.0.0.1:0") {
    CoordinatorOptions o = ServerOptions(dir_.path());
    o.listen_address = listen;
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> server = CoordinatorServer::Start(o);
    if (!server.ok()) {
      ADD_FAILURE() << server.status();
      std::abort();
    }
    server_ = *std::move(server);
    agent_ = NewWorkerClient(WorkerClientOptions(server_->address(), kJob, kToken));
    absl::StatusOr<v1::JoinResponse> joined = agent_->Join(JoinOf("node-0", 8));
    if (!joined.ok()) {
      ADD_FAILURE() << joined.status();
      std::abort();
    }
    generation_ = joined->generation();
    relay_ = std::make_unique<RelayUnderTest>(server_->address(), kToken);
  }
  std::shared_ptr<comm::Store> Fresh(v1::KeyScope scope = v1::KEY_SCOPE_GENERATION) {
    return std::make_shared<CoordinatorStore>(
        NewWorkerClient(WorkerClientOptions(relay_->target(), kJob, kToken, generation_)), scope);
  }
  CoordinatorClient& agent() { return *agent_; }
  int64_t generation() const { return generation_; }
  RelayUnderTest& relay() { return *relay_; }
  const std::string& run_dir() const { return dir_.path(); }
  std::unique_ptr<CoordinatorServer>& server() { return server_; }

 private:
  TempDir dir_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<CoordinatorClient> agent_;
  int64_t generation_ = 0;
  std::unique_ptr<RelayUnderTest> relay_;
};

INSTANTIATE_TYPED_TEST_SUITE_P(RealRelay, StoreContractTest, RealRelayFactory);

// The generation moves on (a rank failed) while 8 ranks wait through the relay on one
// upstream call: every one of them gets the coordinator's FAILED_PRECONDITION and its
// message naming the fenced generation.
TEST(StoreRelayRealTest, AFencedGenerationReachesEveryWaiter) {
  RealRelayFactory f;
  constexpr int kRanks = 8;
  std::vector<absl::Status> got(kRanks, absl::UnknownError(""));
  std::vector<std::thread> ranks;
  for (int r = 0; r < kRanks; ++r) {
    ranks.emplace_back([&, r, store = f.Fresh()] { got[r] = store->Wait({"nccl/id"}, absl::Seconds(60)); });
  }
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), kRanks));

  std::mutex mu;
  std::condition_variable cv;
  bool ended = false;
  v1::NodeHealth beat;
  for (int r = 0; r < kRanks; ++r) {
    v1::RankHealth* h = beat.add_ranks();
    h->set_local_rank(r);
    h->set_state(r == 3 ? v1::RANK_STATE_FAILED : v1::RANK_STATE_RUNNING);
    h->set_exit_code(r == 3 ? 1 : 0);
  }
  absl::StatusOr<std::unique_ptr<HealthStream>> hs = f.agent().OpenHealthStream(
      "node-0", f.generation(), beat, [](const v1::Command&) {},
      [&](const absl::Status&) {
        std::lock_guard<std::mutex> lock(mu);
        ended = true;
        cv.notify_all();
      });
  ASSERT_TRUE(hs.ok()) << hs.status();
  for (auto& t : ranks) t.join();
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(got[r].code(), absl::StatusCode::kFailedPrecondition) << "rank " << r << ": " << got[r];
    EXPECT_THAT(std::string(got[r].message()), HasSubstr("generation " + std::to_string(f.generation())))
        << "rank " << r;
    EXPECT_THAT(std::string(got[r].message()), HasSubstr("store relay unix:")) << "rank " << r;
  }
  EXPECT_EQ(f.relay().relay().stats().upstream_waits, 1);
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return ended; });
  }
  hs->reset();
}

// The coordinator is restarted (same address and run directory) while ranks wait on a
// JOB key through the relay: the relay retries its one upstream wait against the
// successor, where the key is then set.
TEST(StoreRelayRealTest, AWaitIsCarriedAcrossACoordinatorRestartByTheRelay) {
  RealRelayFactory f("127.0.0.1:" + std::to_string(UnusedPort()));
  const std::string address = f.server()->address();
  constexpr int kRanks = 3;
  std::vector<absl::StatusOr<std::string>> got(kRanks, absl::UnknownError(""));
  std::vector<std::thread> ranks;
  for (int r = 0; r < kRanks; ++r) {
    ranks.emplace_back([&, r, store = f.Fresh(v1::KEY_SCOPE_JOB)] {
      got[r] = store->WaitGet("late/key", absl::Seconds(30));
    });
  }
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), kRanks));
  f.server()->Shutdown();
  f.server().reset();
  absl::SleepFor(absl::Milliseconds(300));
  CoordinatorOptions o = ServerOptions(f.run_dir());
  o.listen_address = address;
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> successor = CoordinatorServer::Start(o);
  ASSERT_TRUE(successor.ok()) << successor.status();
  CoordinatorStore other(NewWorkerClient(WorkerClientOptions(address, kJob, kToken, f.generation())),
                         v1::KEY_SCOPE_JOB);
  ASSERT_TRUE(other.Set("late/key", "made it").ok());
  for (auto& t : ranks) t.join();
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_TRUE(got[r].ok()) << "rank " << r << ": " << got[r].status();
    EXPECT_EQ(*got[r], "made it");
  }
}

}  // namespace
}  // namespace colossus::launcher::testing

namespace colossus::comm::testing {
INSTANTIATE_TYPED_TEST_SUITE_P(RealRelay, StoreContract, colossus::launcher::testing::RealRelayFactory);
}  // namespace colossus::comm::testing
