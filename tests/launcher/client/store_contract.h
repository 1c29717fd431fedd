// comm's Store contract (comm/include/colossus/comm/store.h) run through
// CoordinatorStore, and a Gloo group formed over it. Type-parameterized over a factory:
//   struct Factory {
//     std::shared_ptr<comm::Store> Fresh();  // a new client (own connection) of the
//                                            // same coordinator and generation
//   };
// instantiated against the in-test fake (coordinator_store_test.cc) and the real
// coordinator (integration_test.cc).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "colossus/comm/gloo.h"
#include "colossus/launcher/coordinator_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher::testing {

template <typename F>
class StoreContractTest : public ::testing::Test {
 protected:
  F factory_;
};

TYPED_TEST_SUITE_P(StoreContractTest);

inline std::string Message(const absl::Status& s) { return std::string(s.message()); }

TYPED_TEST_P(StoreContractTest, SetGetOverwriteAndBinaryValues) {
  auto s = this->factory_.Fresh();
  ASSERT_TRUE(s->Set("a", "1").ok());
  EXPECT_EQ(*s->Get("a"), "1");
  const std::string binary("x\0y\xff", 4);
  ASSERT_TRUE(s->Set("a", binary).ok());
  EXPECT_EQ(*s->Get("a"), binary);
  ASSERT_TRUE(s->Set("empty", "").ok());
  EXPECT_EQ(*s->Get("empty"), "");
  EXPECT_EQ(*this->factory_.Fresh()->Get("a"), binary);  // another client sees it
}

TYPED_TEST_P(StoreContractTest, GetOfAbsentKeyIsNotFoundNamingTheKey) {
  absl::StatusOr<std::string> v = this->factory_.Fresh()->Get("nope/42");
  ASSERT_EQ(v.status().code(), absl::StatusCode::kNotFound) << v.status();
  EXPECT_THAT(Message(v.status()), ::testing::HasSubstr("nope/42"));
}

TYPED_TEST_P(StoreContractTest, WaitReturnsOnceAllKeysExist) {
  auto s = this->factory_.Fresh();
  EXPECT_TRUE(s->Wait({}, absl::Milliseconds(1)).ok());
  ASSERT_TRUE(s->Set("k1", "v").ok());
  EXPECT_TRUE(s->Wait({"k1"}, absl::Seconds(5)).ok());
  auto other = this->factory_.Fresh();
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(50));
    EXPECT_TRUE(other->Set("k2", "v").ok());
    absl::SleepFor(absl::Milliseconds(50));
    EXPECT_TRUE(other->Add("k3", 1).ok());
  });
  EXPECT_TRUE(s->Wait({"k1", "k2", "k3"}, absl::Seconds(10)).ok());
  setter.join();
  EXPECT_EQ(*s->WaitGet("k3", absl::Seconds(1)), "1");
}

TYPED_TEST_P(StoreContractTest, WaitTimesOutNamingOnlyTheMissingKeys) {
  auto s = this->factory_.Fresh();
  ASSERT_TRUE(s->Set("here", "v").ok());
  absl::Status st = s->Wait({"here", "rank/3", "rank/5"}, absl::Milliseconds(200));
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_THAT(Message(st), ::testing::HasSubstr("rank/3"));
  EXPECT_THAT(Message(st), ::testing::HasSubstr("rank/5"));
  EXPECT_THAT(Message(st), ::testing::Not(::testing::HasSubstr("here")));
  EXPECT_EQ(*s->Get("here"), "v");  // still usable
}

TYPED_TEST_P(StoreContractTest, AddIsACounterAndRefusesText) {
  auto s = this->factory_.Fresh();
  EXPECT_EQ(*s->Add("n", 5), 5);
  EXPECT_EQ(*s->Add("n", -7), -2);
  EXPECT_EQ(*s->Add("n", int64_t{1} << 40), (int64_t{1} << 40) - 2);
  EXPECT_EQ(*s->Get("n"), std::to_string((int64_t{1} << 40) - 2));
  ASSERT_TRUE(s->Set("text", "hello").ok());
  absl::StatusOr<int64_t> bad = s->Add("text", 1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_THAT(Message(bad.status()), ::testing::HasSubstr("text"));
  EXPECT_EQ(*s->Get("text"), "hello");
}

TYPED_TEST_P(StoreContractTest, CompareSet) {
  auto s = this->factory_.Fresh();
  absl::StatusOr<comm::CompareSetResult> r = s->CompareSet("leader", std::nullopt, "rank1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(r->value, "rank1");
  r = s->CompareSet("leader", std::nullopt, "rank2");
  EXPECT_FALSE(r->swapped);
  EXPECT_EQ(r->value, "rank1");
  r = s->CompareSet("leader", "rank0", "rank2");
  EXPECT_FALSE(r->swapped);
  r = s->CompareSet("leader", "rank1", "rank2");
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(*s->Get("leader"), "rank2");
  r = s->CompareSet("nobody", "x", "y");
  EXPECT_FALSE(r->swapped);
  EXPECT_FALSE(r->value.has_value());
  EXPECT_EQ(s->Get("nobody").status().code(), absl::StatusCode::kNotFound);
}

TYPED_TEST_P(StoreContractTest, Delete) {
  auto s = this->factory_.Fresh();
  ASSERT_TRUE(s->Set("d", "v").ok());
  EXPECT_TRUE(*s->Delete("d"));
  EXPECT_FALSE(*s->Delete("d"));
  EXPECT_EQ(s->Get("d").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s->Wait({"d"}, absl::Milliseconds(50)).code(), absl::StatusCode::kDeadlineExceeded);
}

TYPED_TEST_P(StoreContractTest, ConcurrentClientsCountExactly) {
  constexpr int kThreads = 6, kAdds = 50;
  auto shared = this->factory_.Fresh();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto s = t % 2 ? shared : this->factory_.Fresh();
      for (int i = 0; i < kAdds; ++i) ASSERT_TRUE(s->Add("counter", 1).ok());
      ASSERT_TRUE(s->Set("done/" + std::to_string(t), "1").ok());
    });
  }
  std::vector<std::string> keys;
  for (int t = 0; t < kThreads; ++t) keys.push_back("done/" + std::to_string(t));
  EXPECT_TRUE(shared->Wait(keys, absl::Seconds(30)).ok());
  for (auto& th : threads) th.join();
  EXPECT_EQ(*shared->Get("counter"), std::to_string(kThreads * kAdds));
}

TYPED_TEST_P(StoreContractTest, AWaitingThreadDoesNotBlockOtherCallsOnTheSameClient) {
  auto s = this->factory_.Fresh();
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    EXPECT_TRUE(s->Wait({"late"}, absl::Seconds(10)).ok());
    done = true;
  });
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(s->Set("late", "v").ok());  // same client as the waiter
  waiter.join();
  EXPECT_TRUE(done);
}

// Three ranks (threads, each with its own coordinator connection) form a Gloo group over
// the coordinator's store and all-reduce: the rendezvous workers will use at scale.
TYPED_TEST_P(StoreContractTest, GlooGroupFormsOverTheStoreAndAllReduces) {
  constexpr int kRanks = 3;
  constexpr size_t kCount = 1000;
  std::vector<absl::Status> results(kRanks);
  std::vector<std::vector<float>> data(kRanks, std::vector<float>(kCount));
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      comm::GlooOptions o;
      o.comm.timeout = absl::Seconds(20);
      o.comm.init_timeout = absl::Seconds(20);
      absl::StatusOr<std::unique_ptr<comm::Communicator>> c =
          comm::CreateGlooCommunicator(this->factory_.Fresh(), r, kRanks, o);
      if (!c.ok()) {
        results[r] = c.status();
        return;
      }
      for (size_t i = 0; i < kCount; ++i) data[r][i] = static_cast<float>((r + 1) * i);
      results[r] = (*c)->AllReduce(data[r].data(), data[r].data(), kCount, comm::DataType::kF32,
                                   comm::ReduceOp::kSum)
                       .Wait();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r];
    for (size_t i = 0; i < kCount; i += 97) EXPECT_EQ(data[r][i], 6.0f * i) << "rank " << r;
  }
}

REGISTER_TYPED_TEST_SUITE_P(StoreContractTest, SetGetOverwriteAndBinaryValues,
                            GetOfAbsentKeyIsNotFoundNamingTheKey, WaitReturnsOnceAllKeysExist,
                            WaitTimesOutNamingOnlyTheMissingKeys, AddIsACounterAndRefusesText,
                            CompareSet, Delete, ConcurrentClientsCountExactly,
                            AWaitingThreadDoesNotBlockOtherCallsOnTheSameClient,
                            GlooGroupFormsOverTheStoreAndAllReduces);

}  // namespace colossus::launcher::testing
