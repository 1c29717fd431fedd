// The Store contract, run against every implementation: in-memory, TCP, and a prefix
// view of each.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "colossus/comm/in_memory_store.h"
#include "colossus/comm/prefix_store.h"
#include "colossus/comm/tcp_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::comm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Makes stores of one kind; Fresh() returns another client of the same data.
class StoreFactory {
 public:
  virtual ~StoreFactory() = default;
  virtual std::shared_ptr<Store> Fresh() = 0;
};

class InMemoryFactory : public StoreFactory {
 public:
  std::shared_ptr<Store> Fresh() override { return store_; }

 private:
  std::shared_ptr<Store> store_ = std::make_shared<InMemoryStore>();
};

class TcpFactory : public StoreFactory {
 public:
  TcpFactory() {
    auto server = TcpStoreServer::Start();
    DieUnlessOk(server);
    server_ = *std::move(server);
  }
  std::shared_ptr<Store> Fresh() override {
    auto client = TcpStore::Connect("127.0.0.1", server_->port());
    DieUnlessOk(client);
    return std::shared_ptr<Store>(*std::move(client));
  }

 private:
  static void DieUnlessOk(const auto& s) {
    if (!s.ok()) {
      ADD_FAILURE() << s.status();
      std::abort();
    }
  }
  std::unique_ptr<TcpStoreServer> server_;
};

template <typename Base>
class PrefixFactory : public Base {
 public:
  std::shared_ptr<Store> Fresh() override {
    return std::make_shared<PrefixStore>(Base::Fresh(), "job7/gen3");
  }
};

template <typename F>
class StoreTest : public ::testing::Test {
 protected:
  F factory_;
};

using Factories = ::testing::Types<InMemoryFactory, TcpFactory, PrefixFactory<InMemoryFactory>,
                                   PrefixFactory<TcpFactory>>;
TYPED_TEST_SUITE(StoreTest, Factories);

TYPED_TEST(StoreTest, SetGetOverwriteAndBinaryValues) {
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

TYPED_TEST(StoreTest, GetOfAbsentKeyIsNotFoundNamingTheKey) {
  auto s = this->factory_.Fresh();
  absl::StatusOr<std::string> v = s->Get("nope/42");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("nope/42"));
}

TYPED_TEST(StoreTest, WaitReturnsOnceAllKeysExist) {
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

TYPED_TEST(StoreTest, WaitTimesOutNamingOnlyTheMissingKeys) {
  auto s = this->factory_.Fresh();
  ASSERT_TRUE(s->Set("here", "v").ok());
  const absl::Time start = absl::Now();
  absl::Status st = s->Wait({"here", "rank/3", "rank/5"}, absl::Milliseconds(200));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("rank/3"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("rank/5"));
  EXPECT_THAT(std::string(st.message()), Not(HasSubstr("'here'")));
  EXPECT_GE(took, absl::Milliseconds(190));
  EXPECT_LT(took, absl::Seconds(3));
  // The store still works after a timed-out wait.
  EXPECT_EQ(*s->Get("here"), "v");
}

TYPED_TEST(StoreTest, AddIsACounter) {
  auto s = this->factory_.Fresh();
  EXPECT_EQ(*s->Add("n", 5), 5);
  EXPECT_EQ(*s->Add("n", -7), -2);
  EXPECT_EQ(*s->Add("n", int64_t{1} << 40), (int64_t{1} << 40) - 2);
  EXPECT_EQ(*s->Get("n"), std::to_string((int64_t{1} << 40) - 2));
  ASSERT_TRUE(s->Set("text", "hello").ok());
  absl::StatusOr<int64_t> bad = s->Add("text", 1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("text"));
  EXPECT_EQ(*s->Get("text"), "hello");
}

TYPED_TEST(StoreTest, CompareSet) {
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

TYPED_TEST(StoreTest, Delete) {
  auto s = this->factory_.Fresh();
  ASSERT_TRUE(s->Set("d", "v").ok());
  EXPECT_TRUE(*s->Delete("d"));
  EXPECT_FALSE(*s->Delete("d"));
  EXPECT_EQ(s->Get("d").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s->Wait({"d"}, absl::Milliseconds(50)).code(), absl::StatusCode::kDeadlineExceeded);
}

TYPED_TEST(StoreTest, ConcurrentClientsCountExactly) {
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

TYPED_TEST(StoreTest, AWaitingThreadDoesNotBlockOtherCallsOnTheSameClient) {
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

TEST(PrefixStoreTest, PrefixesDoNotSeeEachOther) {
  auto base = std::make_shared<InMemoryStore>();
  PrefixStore gen1(base, "gen1"), gen2(base, "gen2");
  ASSERT_TRUE(gen1.Set("addr/0", "a").ok());
  EXPECT_EQ(gen2.Get("addr/0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*base->Get("gen1/addr/0"), "a");
  PrefixStore nested(std::make_shared<PrefixStore>(base, "job"), "gen3");
  ASSERT_TRUE(nested.Set("k", "v").ok());
  EXPECT_EQ(*base->Get("job/gen3/k"), "v");
  absl::Status st = gen2.Wait({"addr/0"}, absl::Milliseconds(20));
  EXPECT_THAT(std::string(st.message()), HasSubstr("gen2/addr/0"));
}

}  // namespace
}  // namespace colossus::comm
