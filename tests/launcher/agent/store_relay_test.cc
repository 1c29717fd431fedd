// The node agent's store relay (launcher/include/colossus/launcher/store_relay.h) in
// front of the in-test fake coordinator, which counts the calls that reach it: comm's
// Store contract through the relay, 8 local waiters -> 1 upstream wait, each waiter's own
// timeout, the local token check, a relay that goes away, and the worker's store built
// from the environment the agent sets (COLOSSUS_STORE).
#include <atomic>
#include <thread>

#include "colossus/launcher/worker_store.h"
#include "fake_coordinator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "relay_test_util.h"
#include "store_contract.h"

namespace colossus::launcher::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kJob[] = "job1";
constexpr char kToken[] = "secret";

// Workers' stores through one relay in front of one fake coordinator.
class RelayFactory {
 public:
  std::shared_ptr<comm::Store> Fresh(v1::KeyScope scope = v1::KEY_SCOPE_GENERATION) {
    return std::make_shared<CoordinatorStore>(NewWorkerClient(WorkerClientOptions(relay_.target(), kJob, kToken)),
                                              scope);
  }
  // A worker's store talking to the coordinator itself (another node, say).
  std::shared_ptr<comm::Store> Direct() {
    return std::make_shared<CoordinatorStore>(
        NewWorkerClient(WorkerClientOptions(fake_.target(), kJob, kToken)));
  }
  FakeCoordinator& fake() { return fake_; }
  RelayUnderTest& relay() { return relay_; }

 private:
  FakeCoordinator fake_{kJob, kToken};
  RelayUnderTest relay_{fake_.target(), kToken};
};

INSTANTIATE_TYPED_TEST_SUITE_P(Relay, StoreContractTest, RelayFactory);

// Eight ranks of one node wait for the same keys: one StoreWait reaches the coordinator,
// and one Set from elsewhere wakes all eight with the values in key order.
TEST(StoreRelayTest, EightLocalWaitersShareOneUpstreamWaitAndAllGetTheValues) {
  RelayFactory f;
  constexpr int kRanks = 8;
  std::vector<absl::StatusOr<std::vector<std::string>>> got(kRanks, absl::UnknownError(""));
  std::vector<std::thread> ranks;
  for (int r = 0; r < kRanks; ++r) {
    ranks.emplace_back([&, r, store = f.Fresh()] {
      got[r] = store->WaitGet(std::vector<std::string>{"nccl/id", "nccl/size"}, absl::Seconds(30));
    });
  }
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), kRanks));
  auto other_node = f.Direct();
  ASSERT_TRUE(other_node->Set("nccl/size", "128").ok());
  ASSERT_TRUE(other_node->Set("nccl/id", std::string("\0id\xff", 4)).ok());
  for (auto& t : ranks) t.join();
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_TRUE(got[r].ok()) << "rank " << r << ": " << got[r].status();
    EXPECT_THAT(*got[r], ::testing::ElementsAre(std::string("\0id\xff", 4), "128")) << "rank " << r;
  }
  EXPECT_EQ(f.fake().calls("StoreWait"), 1);
  const StoreRelay::Stats stats = f.relay().relay().stats();
  EXPECT_EQ(stats.local_waits, kRanks);
  EXPECT_EQ(stats.upstream_waits, 1);
}

// Waits for different keys (or key orders) are different upstream calls.
TEST(StoreRelayTest, WaitsForDifferentKeysAreNotShared) {
  RelayFactory f;
  std::vector<absl::StatusOr<std::vector<std::string>>> got(4, absl::UnknownError(""));
  const std::vector<std::vector<std::string>> keys = {{"a"}, {"a"}, {"b"}, {"a", "b"}};
  std::vector<std::thread> ranks;
  for (int r = 0; r < 4; ++r) {
    ranks.emplace_back([&, r, store = f.Fresh()] { got[r] = store->WaitGet(keys[r], absl::Seconds(30)); });
  }
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), 4));
  ASSERT_TRUE(f.Direct()->Set("a", "1").ok());
  ASSERT_TRUE(f.Direct()->Set("b", "2").ok());
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 4; ++r) ASSERT_TRUE(got[r].ok()) << got[r].status();
  EXPECT_THAT(*got[3], ::testing::ElementsAre("1", "2"));
  EXPECT_EQ(f.relay().relay().stats().upstream_waits, 3);
  EXPECT_EQ(f.fake().calls("StoreWait"), 3);
}

// A short wait that opened the shared call times out on its own; the long one that
// joined it keeps waiting (on a new upstream call) and gets the value.
TEST(StoreRelayTest, AShortWaiterTimesOutAloneWhenItOpenedTheSharedWait) {
  RelayFactory f;
  auto short_rank = f.Fresh(), long_rank = f.Fresh();
  absl::Status short_result;
  absl::Time short_end;
  const absl::Time start = absl::Now();
  std::thread s([&] {
    short_result = short_rank->Wait({"late"}, absl::Milliseconds(400));
    short_end = absl::Now();
  });
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), 1));
  absl::StatusOr<std::string> long_result = absl::UnknownError("");
  std::thread l([&] { long_result = long_rank->WaitGet("late", absl::Seconds(30)); });
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), 2));
  s.join();
  EXPECT_EQ(short_result.code(), absl::StatusCode::kDeadlineExceeded) << short_result;
  EXPECT_THAT(std::string(short_result.message()), HasSubstr("late"));
  EXPECT_GE(short_end - start, absl::Milliseconds(390));
  ASSERT_TRUE(f.Direct()->Set("late", "v").ok());
  l.join();
  ASSERT_TRUE(long_result.ok()) << long_result.status();
  EXPECT_EQ(*long_result, "v");
}

// A short wait that joined a longer shared call is answered at its own deadline, naming
// only the keys still missing; the long one is unaffected.
TEST(StoreRelayTest, AShortWaiterThatJoinedALongerWaitTimesOutOnItsOwnDeadline) {
  RelayFactory f;
  auto long_rank = f.Fresh(), short_rank = f.Fresh();
  ASSERT_TRUE(f.Direct()->Set("here", "x").ok());
  absl::StatusOr<std::vector<std::string>> long_result = absl::UnknownError("");
  std::thread l([&] {
    long_result = long_rank->WaitGet(std::vector<std::string>{"here", "late"}, absl::Seconds(30));
  });
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), 1));
  const absl::Time start = absl::Now();
  absl::Status short_result = short_rank->Wait({"here", "late"}, absl::Milliseconds(300));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));
  EXPECT_EQ(short_result.code(), absl::StatusCode::kDeadlineExceeded) << short_result;
  EXPECT_THAT(std::string(short_result.message()), HasSubstr("late"));
  EXPECT_THAT(std::string(short_result.message()), Not(HasSubstr("here")));
  EXPECT_EQ(f.relay().relay().stats().probes, 1);
  ASSERT_TRUE(f.Direct()->Set("late", "y").ok());
  l.join();
  ASSERT_TRUE(long_result.ok()) << long_result.status();
  EXPECT_THAT(*long_result, ::testing::ElementsAre("x", "y"));
}

// The relay never widens access: without the job's token nothing reaches the coordinator.
TEST(StoreRelayTest, AWrongOrMissingTokenIsRefusedLocally) {
  RelayFactory f;
  for (const std::string token : {"wrong", ""}) {
    CoordinatorStore store(NewWorkerClient(WorkerClientOptions(f.relay().target(), kJob, token)));
    absl::Status set = store.Set("k", "v");
    EXPECT_EQ(set.code(), absl::StatusCode::kUnauthenticated) << set;
    EXPECT_THAT(std::string(set.message()), HasSubstr("store relay"));
    EXPECT_EQ(store.Get("k").status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(store.Wait({"k"}, absl::Seconds(5)).code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(store.Add("n", 1).status().code(), absl::StatusCode::kUnauthenticated);
  }
  EXPECT_TRUE(f.fake().tokens_seen().empty()) << "a call reached the coordinator";
  EXPECT_EQ(f.relay().relay().stats().refused, 8);
  EXPECT_EQ(f.Direct()->Get("k").status().code(), absl::StatusCode::kNotFound);
}

// Upstream UNAVAILABLE answers are retried by the relay within the wait's hold; the
// waiters see only the values.
TEST(StoreRelayTest, UnavailableAnswersAreRetriedByTheRelay) {
  RelayFactory f;
  auto a = f.Fresh(), b = f.Fresh();
  f.fake().FailNext(3);
  absl::StatusOr<std::string> ra = absl::UnknownError(""), rb = absl::UnknownError("");
  std::thread ta([&] { ra = a->WaitGet("k", absl::Seconds(30)); });
  std::thread tb([&] { rb = b->WaitGet("k", absl::Seconds(30)); });
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), 2));
  ASSERT_TRUE(WaitUntil([&] { return f.fake().calls("StoreWait") >= 4; }, 20));
  ASSERT_TRUE(f.Direct()->Set("k", "after").ok());
  ta.join();
  tb.join();
  ASSERT_TRUE(ra.ok()) << ra.status();
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_EQ(*ra, "after");
  EXPECT_EQ(*rb, "after");
}

// The relay goes away (its agent stops) while a rank waits and before another calls:
// both get Unavailable naming the relay, not a hang.
TEST(StoreRelayTest, ARelayThatGoesAwayGivesAClearErrorNotAHang) {
  RelayFactory f;
  auto waiting = f.Fresh();
  absl::Status waited;
  std::thread t([&] { waited = waiting->Wait({"never"}, absl::Seconds(600)); });
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), 1));
  f.relay().Stop();
  t.join();
  EXPECT_EQ(waited.code(), absl::StatusCode::kUnavailable) << waited;
  EXPECT_THAT(std::string(waited.message()), HasSubstr("store relay unix:"));
  absl::Status later = f.Fresh()->Set("k", "v");
  EXPECT_EQ(later.code(), absl::StatusCode::kUnavailable) << later;
  EXPECT_THAT(std::string(later.message()), HasSubstr("store relay unix:"));
  EXPECT_FALSE(std::filesystem::exists(f.relay().socket_path()));
}

// A rank that gives up (its client shuts down) leaves; the last one to leave ends the
// upstream call, and a later wait opens a new one.
TEST(StoreRelayTest, TheLastWaiterToLeaveEndsTheUpstreamWait) {
  RelayFactory f;
  auto client = NewWorkerClient(WorkerClientOptions(f.relay().target(), kJob, kToken));
  CoordinatorStore store(client);
  absl::Status waited;
  std::thread t([&] { waited = store.Wait({"k"}, absl::Seconds(600)); });
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), 1));
  client->Shutdown();
  t.join();
  EXPECT_EQ(waited.code(), absl::StatusCode::kCancelled) << waited;
  absl::StatusOr<std::string> again = absl::UnknownError("");
  std::thread t2([&] { again = f.Fresh()->WaitGet("k", absl::Seconds(30)); });
  ASSERT_TRUE(WaitForLocalWaits(f.relay().relay(), 2));
  ASSERT_TRUE(f.Direct()->Set("k", "v").ok());
  t2.join();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(f.relay().relay().stats().upstream_waits, 2);
}

// The worker's store from the agent's environment goes through COLOSSUS_STORE.
TEST(StoreRelayTest, TheWorkerStoreFromTheEnvironmentUsesTheRelay) {
  RelayFactory f;
  TempDir dir;
  const std::string token_file = dir / "token";
  std::ofstream(token_file) << kToken << "\n";
  std::map<std::string, std::string> env = {{"COLOSSUS_COORDINATOR", f.fake().target()},
                                            {"COLOSSUS_JOB_ID", kJob},
                                            {"COLOSSUS_TOKEN_FILE", token_file},
                                            {"COLOSSUS_GENERATION", "1"},
                                            {"COLOSSUS_STORE", f.relay().target()}};
  auto lookup = [&](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  absl::StatusOr<std::shared_ptr<comm::Store>> store = CoordinatorStoreFromEnvironment(lookup);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Set("via", "relay").ok());
  EXPECT_EQ(*(*store)->WaitGet("via", absl::Seconds(5)), "relay");
  EXPECT_EQ(f.relay().relay().stats().forwarded, 1);
  EXPECT_EQ(f.relay().relay().stats().local_waits, 1);
  // Without COLOSSUS_STORE: the coordinator directly.
  env.erase("COLOSSUS_STORE");
  store = CoordinatorStoreFromEnvironment(lookup);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->Get("via"), "relay");
  EXPECT_EQ(f.relay().relay().stats().forwarded, 1);
}

TEST(StoreRelayTest, StartRefusesAPathTooLongForAUnixSocket) {
  StoreRelayOptions o;
  o.socket_path = "/tmp/" + std::string(200, 'x') + ".sock";
  CoordinatorChannelOptions co;
  co.target = "127.0.0.1:1";
  o.upstream = *MakeCoordinatorChannel(co);
  o.token = kToken;
  absl::StatusOr<std::unique_ptr<StoreRelay>> relay = StoreRelay::Start(o);
  EXPECT_EQ(relay.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(relay.status().message()), HasSubstr("too long"));
}

}  // namespace
}  // namespace colossus::launcher::testing

// comm's own Store contract, through the relay.
namespace colossus::comm::testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Relay, StoreContract, colossus::launcher::testing::RelayFactory);
}  // namespace colossus::comm::testing
