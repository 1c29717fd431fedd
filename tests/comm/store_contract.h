// comm's Store contract (comm/include/colossus/comm/store.h) as a type-parameterized
// suite, so every implementation runs the same assertions: comm's own stores
// (store_test.cc) and the coordinator's CoordinatorStore (tests/launcher/client/).
//   struct Factory {
//     std::shared_ptr<Store> Fresh();  // another client of the same data
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(Name, StoreContract, ::testing::Types<Factory...>);
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "colossus/comm/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::comm::testing {

template <typename F>
class StoreContract : public ::testing::Test {
 protected:
  F factory_;
};

TYPED_TEST_SUITE_P(StoreContract);

TYPED_TEST_P(StoreContract, SetGetOverwriteAndBinaryValues) {
  auto s = this->factory_.Fresh();
  EXPECT_TRUE(s->Set("a", "1").ok());
  EXPECT_EQ(*s->Get("a"), "1");
  const std::string binary("x\0y\xff", 4);
  EXPECT_TRUE(s->Set("a", binary).ok());
  EXPECT_EQ(*s->Get("a"), binary);
  EXPECT_TRUE(s->Set("empty", "").ok());
  EXPECT_EQ(*s->Get("empty"), "");
  // Another client sees the same data.
  EXPECT_EQ(*this->factory_.Fresh()->Get("a"), binary);
}

TYPED_TEST_P(StoreContract, GetOfAbsentKeyIsNotFoundNamingTheKey) {
  auto s = this->factory_.Fresh();
  absl::StatusOr<std::string> v = s->Get("nope/42");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(v.status().message()), ::testing::HasSubstr("nope/42"));
}

TYPED_TEST_P(StoreContract, WaitReturnsOnceAllKeysExist) {
  auto s = this->factory_.Fresh();
  EXPECT_TRUE(s->Wait({}, absl::Milliseconds(1)).ok());
  ASSERT_TRUE(s->Set("k1", "v").ok());
  EXPECT_TRUE(s->Wait({"k1"}, absl::Seconds(5)).ok());
  auto other = this->factory_.Fresh();
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(other->Set("k2", "v").ok());
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(other->Add("k3", 1).ok());
  });
  const absl::Time start = absl::Now();
  EXPECT_TRUE(s->Wait({"k1", "k2", "k3"}, absl::Seconds(10)).ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(90));
  setter.join();
  EXPECT_EQ(*s->WaitGet("k3", absl::Seconds(1)), "1");
}

TYPED_TEST_P(StoreContract, WaitTimesOutNamingOnlyTheMissingKeys) {
  auto s = this->factory_.Fresh();
  ASSERT_TRUE(s->Set("here", "v").ok());
  const absl::Time start = absl::Now();
  absl::Status st = s->Wait({"here", "rank/3", "rank/5"}, absl::Milliseconds(200));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("rank/3"));
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("rank/5"));
  EXPECT_THAT(std::string(st.message()), ::testing::Not(::testing::HasSubstr("here")));
  EXPECT_GE(took, absl::Milliseconds(190));
  EXPECT_LT(took, absl::Seconds(3));
  // The store still works after a timed-out wait.
  EXPECT_EQ(*s->Get("here"), "v");
}

TYPED_TEST_P(StoreContract, WaitGetReturnsTheValuesInKeyOrderOnceAllExist) {
  auto s = this->factory_.Fresh();
  ASSERT_TRUE(s->Set("wg/b", "bee").ok());
  auto other = this->factory_.Fresh();
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(other->Set("wg/a", std::string("a\0z", 3)).ok());
    ASSERT_TRUE(other->Add("wg/c", 7).ok());
  });
  absl::StatusOr<std::vector<std::string>> v =
      s->WaitGet(std::vector<std::string>{"wg/c", "wg/a", "wg/b"}, absl::Seconds(10));
  setter.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_THAT(*v, ::testing::ElementsAre("7", std::string("a\0z", 3), "bee"));
  // One key, and no keys at all.
  EXPECT_EQ(*s->WaitGet("wg/b", absl::Seconds(1)), "bee");
  absl::StatusOr<std::vector<std::string>> none = s->WaitGet(std::vector<std::string>{}, absl::Milliseconds(1));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  // A timeout names only the keys still missing, as Wait's does.
  absl::StatusOr<std::vector<std::string>> late =
      s->WaitGet(std::vector<std::string>{"wg/b", "wg/never"}, absl::Milliseconds(100));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  EXPECT_THAT(std::string(late.status().message()), ::testing::HasSubstr("wg/never"));
  EXPECT_THAT(std::string(late.status().message()), ::testing::Not(::testing::HasSubstr("wg/b")));
}

TYPED_TEST_P(StoreContract, AddIsACounter) {
  auto s = this->factory_.Fresh();
  EXPECT_EQ(*s->Add("n", 5), 5);
  EXPECT_EQ(*s->Add("n", -7), -2);
  EXPECT_EQ(*s->Add("n", int64_t{1} << 40), (int64_t{1} << 40) - 2);
  EXPECT_EQ(*s->Get("n"), std::to_string((int64_t{1} << 40) - 2));
  ASSERT_TRUE(s->Set("text", "hello").ok());
  absl::StatusOr<int64_t> bad = s->Add("text", 1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("text"));
  EXPECT_EQ(*s->Get("text"), "hello");
}

TYPED_TEST_P(StoreContract, CompareSet) {
  auto s = this->factory_.Fresh();
  // Absent key, expected absent: swaps.
  absl::StatusOr<CompareSetResult> r = s->CompareSet("leader", std::nullopt, "rank1");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(r->value, "rank1");
  // Second claimant loses and learns who won.
  r = s->CompareSet("leader", std::nullopt, "rank2");
  EXPECT_FALSE(r->swapped);
  EXPECT_EQ(r->value, "rank1");
  // Wrong expectation: no swap.
  r = s->CompareSet("leader", "rank0", "rank2");
  EXPECT_FALSE(r->swapped);
  EXPECT_EQ(*s->Get("leader"), "rank1");
  // Right expectation: swaps.
  r = s->CompareSet("leader", "rank1", "rank2");
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(*s->Get("leader"), "rank2");
  // Expecting a value of an absent key: no swap, value stays absent.
  r = s->CompareSet("nobody", "x", "y");
  EXPECT_FALSE(r->swapped);
  EXPECT_FALSE(r->value.has_value());
  EXPECT_EQ(s->Get("nobody").status().code(), absl::StatusCode::kNotFound);
}

TYPED_TEST_P(StoreContract, Delete) {
  auto s = this->factory_.Fresh();
  ASSERT_TRUE(s->Set("d", "v").ok());
  EXPECT_TRUE(*s->Delete("d"));
  EXPECT_FALSE(*s->Delete("d"));
  EXPECT_EQ(s->Get("d").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s->Wait({"d"}, absl::Milliseconds(50)).code(), absl::StatusCode::kDeadlineExceeded);
}

TYPED_TEST_P(StoreContract, ConcurrentClientsCountExactly) {
  constexpr int kThreads = 8, kAdds = 200;
  std::vector<std::thread> threads;
  auto shared = this->factory_.Fresh();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads share one client, half have their own.
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

TYPED_TEST_P(StoreContract, AWaitingThreadDoesNotBlockOtherCallsOnTheSameClient) {
  auto s = this->factory_.Fresh();
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    EXPECT_TRUE(s->Wait({"late"}, absl::Seconds(10)).ok());
    done = true;
  });
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  ASSERT_TRUE(s->Set("late", "v").ok());  // same client as the waiter
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  waiter.join();
  EXPECT_TRUE(done);
}

REGISTER_TYPED_TEST_SUITE_P(StoreContract, SetGetOverwriteAndBinaryValues,
                            GetOfAbsentKeyIsNotFoundNamingTheKey, WaitReturnsOnceAllKeysExist,
                            WaitTimesOutNamingOnlyTheMissingKeys,
                            WaitGetReturnsTheValuesInKeyOrderOnceAllExist, AddIsACounter, CompareSet,
                            Delete, ConcurrentClientsCountExactly,
                            AWaitingThreadDoesNotBlockOtherCallsOnTheSameClient);

}  // namespace colossus::comm::testing
