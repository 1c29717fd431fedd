// Communicator behaviour that needs no extra processes: argument checks, sequence
// numbers, size-1 groups, Abort, rendezvous timeouts, and failure propagation between
// ranks running as threads of this process (Gloo over loopback, InMemoryStore).
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "colossus/comm/gloo.h"
#include "colossus/comm/in_memory_store.h"
#include "colossus/comm/prefix_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::comm {
namespace {

using ::testing::HasSubstr;

GlooOptions FastOptions() {
  GlooOptions o;
  o.comm.timeout = absl::Seconds(10);
  o.comm.init_timeout = absl::Seconds(10);
  return o;
}

std::unique_ptr<Communicator> Single() {
  auto comm = CreateGlooCommunicator(std::make_shared<InMemoryStore>(), 0, 1, FastOptions());
  EXPECT_TRUE(comm.ok()) << comm.status();
  return comm.ok() ? *std::move(comm) : nullptr;
}

// Creates `n` ranks as threads sharing one in-memory store.
std::vector<std::unique_ptr<Communicator>> Threads(int n, GlooOptions options = FastOptions()) {
  auto store = std::make_shared<InMemoryStore>();
  std::vector<std::unique_ptr<Communicator>> comms(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      auto c = CreateGlooCommunicator(store, r, n, options);
      ASSERT_TRUE(c.ok()) << c.status();
      comms[r] = *std::move(c);
    });
  }
  for (auto& t : threads) t.join();
  return comms;
}

TEST(CommunicatorTest, SizeOneGroupCopiesAndReduces) {
  auto comm = Single();
  ASSERT_TRUE(comm);
  EXPECT_EQ(comm->backend(), Backend::kGloo);
  float in[3] = {1.5f, -2.0f, 4.0f}, out[3] = {};
  ASSERT_TRUE(comm->AllReduce(in, out, 3, DataType::kF32, ReduceOp::kAvg).Wait().ok());
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[2], 4.0f);
  float rs[3] = {};
  ASSERT_TRUE(comm->ReduceScatter(in, rs, 3, DataType::kF32, ReduceOp::kSum).Wait().ok());
  EXPECT_EQ(rs[1], -2.0f);
  float ag[3] = {};
  ASSERT_TRUE(comm->AllGather(in, ag, 3, DataType::kF32).Wait().ok());
  EXPECT_EQ(ag[2], 4.0f);
  float bc[3] = {};
  ASSERT_TRUE(comm->Broadcast(in, bc, 3, DataType::kF32, 0).Wait().ok());
  EXPECT_EQ(bc[0], 1.5f);
  ASSERT_TRUE(comm->Barrier().Wait().ok());
  EXPECT_EQ(comm->last_seq(), 5u);
}

TEST(CommunicatorTest, BadArgumentsAreInvalidAndLeaveTheCommunicatorUsable) {
  auto comm = Single();
  ASSERT_TRUE(comm);
  float x[4] = {1, 2, 3, 4};
  auto expect_invalid = [&](const Work& w, const char* what) {
    absl::Status s = w.Wait();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("group 'world' rank 0")) << what;
  };
  expect_invalid(comm->AllReduce(nullptr, x, 4, DataType::kF32, ReduceOp::kSum), "null send");
  expect_invalid(comm->AllReduce(x, x, 4, static_cast<DataType>(9), ReduceOp::kSum), "dtype");
  expect_invalid(comm->AllReduce(x, x, 4, DataType::kF32, static_cast<ReduceOp>(9)), "op");
  expect_invalid(comm->Broadcast(x, x, 4, DataType::kF32, 1), "root");
  expect_invalid(comm->Send(x, 4, DataType::kF32, 0), "send to self");
  expect_invalid(comm->Recv(x, 4, DataType::kF32, -1), "peer");
  expect_invalid(comm->AllGather(x, nullptr, 4, DataType::kF32), "null recv");
  expect_invalid(comm->AllReduce(x, x, ~size_t{0} / 2, DataType::kF32, ReduceOp::kSum), "overflow");
  EXPECT_EQ(comm->Split(-5, 0).status().code(), absl::StatusCode::kInvalidArgument);
  // Nothing above took a sequence number or broke the communicator.
  EXPECT_EQ(comm->last_seq(), 0u);
  EXPECT_TRUE(comm->Health().ok());
  EXPECT_TRUE(comm->AllReduce(x, x, 4, DataType::kF32, ReduceOp::kSum).Wait().ok());
  // Zero elements need no buffers.
  EXPECT_TRUE(comm->AllReduce(nullptr, nullptr, 0, DataType::kI64, ReduceOp::kMax).Wait().ok());
  EXPECT_EQ(comm->last_seq(), 2u);
}

TEST(CommunicatorTest, AbortMakesEveryLaterCallFailFast) {
  auto comm = Single();
  ASSERT_TRUE(comm);
  comm->Abort();
  comm->Abort();  // idempotent
  EXPECT_EQ(comm->Health().code(), absl::StatusCode::kAborted);
  float x = 1;
  absl::Status s = comm->AllReduce(&x, &x, 1, DataType::kF32, ReduceOp::kSum).Wait();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("all_reduce"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("aborted"));
}

TEST(CommunicatorTest, RendezvousTimesOutNamingTheMissingRank) {
  GlooOptions o = FastOptions();
  o.comm.init_timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  auto comm = CreateGlooCommunicator(std::make_shared<InMemoryStore>(), 0, 2, o);
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kDeadlineExceeded) << comm.status();
  EXPECT_THAT(std::string(comm.status().message()), HasSubstr("gloo/1"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(CommunicatorTest, BadCreateArguments) {
  auto store = std::make_shared<InMemoryStore>();
  EXPECT_EQ(CreateGlooCommunicator(store, 2, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateGlooCommunicator(nullptr, 0, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CommunicatorTest, ThreadRanksReduceAndAPeerAbortReachesTheOthersAtOnce) {
  std::vector<std::unique_ptr<Communicator>> comms = Threads(3);
  ASSERT_EQ(comms.size(), 3u);
  for (auto& c : comms) ASSERT_TRUE(c);
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(3);
  std::vector<int64_t> values(3);
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      int64_t v = (int64_t{r} + 1) << 35;
      results[r] = comms[r]->AllReduce(&v, &v, 1, DataType::kI64, ReduceOp::kSum).Wait();
      values[r] = v;
    });
  }
  for (auto& t : threads) t.join();
  threads.clear();
  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(results[r].ok()) << results[r];
    EXPECT_EQ(values[r], int64_t{6} << 35);
  }
  // Rank 2 aborts; ranks 0 and 1 enter a collective with a long timeout and must fail
  // fast because the aborted rank's connections are gone.
  comms[2]->Abort();
  const absl::Time start = absl::Now();
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      float v = 1;
      OpOptions o;
      o.timeout = absl::Seconds(20);
      results[r] = comms[r]->AllReduce(&v, &v, 1, DataType::kF32, ReduceOp::kSum, o).Wait();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  for (int r = 0; r < 2; ++r) {
    EXPECT_FALSE(results[r].ok());
    EXPECT_THAT(std::string(results[r].message()), HasSubstr("seq 2")) << results[r];
    EXPECT_FALSE(comms[r]->Health().ok());
  }
}

TEST(CommunicatorTest, AbortFromAnotherThreadEndsAnOperationInFlight) {
  std::vector<std::unique_ptr<Communicator>> comms = Threads(2);
  ASSERT_TRUE(comms[0] && comms[1]);
  // Rank 0 enters an all-reduce that rank 1 never joins; a second thread aborts rank 0.
  constexpr absl::Duration kTimeout = absl::Seconds(2);
  std::thread aborter([&] {
    absl::SleepFor(absl::Milliseconds(200));
    comms[0]->Abort();
  });
  float v = 1;
  OpOptions o;
  o.timeout = kTimeout;
  const absl::Time start = absl::Now();
  absl::Status s = comms[0]->AllReduce(&v, &v, 1, DataType::kF32, ReduceOp::kSum, o).Wait();
  aborter.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  // Gloo cannot interrupt a wait, so the operation ends by its timeout at the latest.
  EXPECT_LT(absl::Now() - start, kTimeout + absl::Seconds(2));
  // The peer sees the connections go and fails at once rather than at its timeout.
  const absl::Time peer_start = absl::Now();
  absl::Status peer = comms[1]->Barrier(o).Wait();
  EXPECT_FALSE(peer.ok());
  EXPECT_LT(absl::Now() - peer_start, absl::Seconds(1)) << peer;
}

// A store whose reads hang once frozen (its server stopped, not dead).
class FreezableStore final : public Store {
 public:
  absl::Status Set(std::string_view k, std::string_view v) override { return base_.Set(k, v); }
  absl::StatusOr<std::string> Get(std::string_view k) override {
    Block();
    return base_.Get(k);
  }
  absl::Status Wait(const std::vector<std::string>& keys, absl::Duration t) override {
    return base_.Wait(keys, t);
  }
  absl::StatusOr<int64_t> Add(std::string_view k, int64_t d) override { return base_.Add(k, d); }
  absl::StatusOr<CompareSetResult> CompareSet(std::string_view k,
                                              std::optional<std::string_view> e,
                                              std::string_view d) override {
    Block();
    return base_.CompareSet(k, e, d);
  }
  absl::StatusOr<bool> Delete(std::string_view k) override { return base_.Delete(k); }

  void Freeze(bool frozen) {
    std::lock_guard<std::mutex> lock(mu_);
    frozen_ = frozen;
    cv_.notify_all();
  }

 private:
  void Block() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !frozen_; });
  }
  InMemoryStore base_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool frozen_ = false;
};

TEST(CommunicatorTest, AHungStoreDelaysAFailureReportOnlyBoundedly) {
  auto store = std::make_shared<FreezableStore>();
  std::vector<std::unique_ptr<Communicator>> comms(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto c = CreateGlooCommunicator(store, r, 2, FastOptions());
      ASSERT_TRUE(c.ok()) << c.status();
      comms[r] = *std::move(c);
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(comms[0] && comms[1]);
  store->Freeze(true);
  // Rank 1 never joins: rank 0 times out, and its diagnosis meets a store that hangs.
  OpOptions o;
  o.timeout = absl::Milliseconds(300);
  float v = 1;
  const absl::Time start = absl::Now();
  absl::Status s = comms[0]->AllReduce(&v, &v, 1, DataType::kF32, ReduceOp::kSum, o).Wait();
  const absl::Duration took = absl::Now() - start;
  store->Freeze(false);
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("did not answer"));
  // The timeout, then at most two bounded store exchanges.
  EXPECT_LT(took, absl::Milliseconds(300) + 2 * absl::Seconds(2) + absl::Seconds(1));
}

}  // namespace
}  // namespace colossus::comm
