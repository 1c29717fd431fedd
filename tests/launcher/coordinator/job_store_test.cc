// JobStore: operations, limits, held waits (release, timeout, cancel), generation scope.
#include "colossus/launcher/job_store.h"

#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "job_test_util.h"

namespace colossus::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::T0;
constexpr auto kGen = v1::KEY_SCOPE_GENERATION;
constexpr auto kJob = v1::KEY_SCOPE_JOB;

struct WaitResult {
  std::optional<absl::StatusOr<std::vector<std::string>>> result;
};

uint64_t WaitInto(JobStore& store, int64_t generation, v1::KeyScope scope,
                  std::vector<std::string> keys, absl::Duration timeout,
                  std::shared_ptr<WaitResult> out) {
  return store.Wait(generation, scope, std::move(keys), T0(), timeout,
                    [out](absl::StatusOr<std::vector<std::string>> r) { out->result = std::move(r); });
}

TEST(JobStore, SetGetAddCompareSetDelete) {
  JobStore store;
  ASSERT_TRUE(store.Set(1, kGen, "k", "v").ok());
  EXPECT_EQ(*store.Get(1, kGen, "k"), "v");
  absl::StatusOr<std::string> missing = store.Get(1, kGen, "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("\"nope\""));
  EXPECT_EQ(store.Get(1, kJob, "k").status().code(), absl::StatusCode::kNotFound)
      << "scopes are separate";

  EXPECT_EQ(*store.Add(1, kGen, "counter", 5), 5);
  EXPECT_EQ(*store.Add(1, kGen, "counter", -2), 3);
  EXPECT_EQ(store.Add(1, kGen, "k", 1).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store.Set(1, kGen, "big", "9223372036854775807").ok());
  EXPECT_EQ(store.Add(1, kGen, "big", 1).status().code(), absl::StatusCode::kOutOfRange);

  absl::StatusOr<CompareSetResult> cas = store.CompareSet(1, kGen, "leader", true, "", "n1");
  ASSERT_TRUE(cas.ok());
  EXPECT_TRUE(cas->swapped);
  cas = store.CompareSet(1, kGen, "leader", true, "", "n2");
  EXPECT_FALSE(cas->swapped);
  EXPECT_EQ(cas->value, "n1");
  cas = store.CompareSet(1, kGen, "leader", false, "n1", "n3");
  EXPECT_TRUE(cas->swapped);
  EXPECT_EQ(*store.Get(1, kGen, "leader"), "n3");
  cas = store.CompareSet(1, kGen, "absent", false, "x", "y");
  EXPECT_FALSE(cas->swapped);
  EXPECT_FALSE(cas->has_value);

  EXPECT_TRUE(*store.Delete(1, kGen, "leader"));
  EXPECT_FALSE(*store.Delete(1, kGen, "leader"));
  EXPECT_EQ(store.op_count(StoreOp::kSet), 2);
}

TEST(JobStore, LimitsAreResourceExhaustedAndNothingChanges) {
  StoreLimits limits;
  limits.max_total_bytes = 4096;
  JobStore store(limits);
  absl::Status s = store.Set(1, kGen, std::string(1025, 'k'), "v");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("1025 bytes exceeds the 1024-byte limit"));
  s = store.Set(1, kGen, "k", std::string((1 << 20) + 1, 'v'));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("1048577 bytes"));
  ASSERT_TRUE(store.Set(1, kGen, "a", std::string(3000, 'a')).ok());
  s = store.Set(1, kGen, "b", std::string(2000, 'b'));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("store full"));
  EXPECT_EQ(store.Get(1, kGen, "b").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store.Set(1, kGen, "a", "small").ok()) << "replacing frees the old bytes";
  ASSERT_TRUE(store.Set(1, kGen, "b", std::string(2000, 'b')).ok());
  EXPECT_EQ(store.Set(1, kGen, "", "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Set(1, static_cast<v1::KeyScope>(7), "k", "v").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(JobStore, HeldWaitReleasedBySetInRequestOrder) {
  JobStore store;
  auto out = std::make_shared<WaitResult>();
  uint64_t ticket = WaitInto(store, 1, kGen, {"x", "y"}, absl::Seconds(10), out);
  EXPECT_NE(ticket, 0u);
  EXPECT_EQ(store.held_waits(), 1);
  ASSERT_TRUE(store.Set(1, kGen, "y", "why").ok());
  EXPECT_FALSE(out->result.has_value());
  ASSERT_TRUE(store.Set(1, kGen, "x", "ex").ok());
  ASSERT_TRUE(out->result.has_value());
  EXPECT_THAT(**out->result, ElementsAre("ex", "why"));
  EXPECT_EQ(store.held_waits(), 0);
  // Present keys: answered at once.
  auto now = std::make_shared<WaitResult>();
  EXPECT_EQ(WaitInto(store, 1, kGen, {"x"}, absl::Seconds(1), now), 0u);
  EXPECT_THAT(**now->result, ElementsAre("ex"));
}

TEST(JobStore, DeleteBeforeTheLastKeyKeepsWaiting) {
  JobStore store;
  auto out = std::make_shared<WaitResult>();
  WaitInto(store, 1, kGen, {"a", "b"}, absl::Seconds(10), out);
  ASSERT_TRUE(store.Set(1, kGen, "a", "1").ok());
  ASSERT_TRUE(*store.Delete(1, kGen, "a"));
  ASSERT_TRUE(store.Set(1, kGen, "b", "2").ok());
  EXPECT_FALSE(out->result.has_value()) << "a was deleted again";
  ASSERT_TRUE(store.Set(1, kGen, "a", "3").ok());
  ASSERT_TRUE(out->result.has_value());
  EXPECT_THAT(**out->result, ElementsAre("3", "2"));
}

TEST(JobStore, WaitTimesOutNamingMissingKeysAndCancelled) {
  JobStore store;
  ASSERT_TRUE(store.Set(1, kGen, "here", "1").ok());
  auto out = std::make_shared<WaitResult>();
  WaitInto(store, 1, kGen, {"here", "gloo/rank3"}, absl::Seconds(5), out);
  store.Tick(T0() + absl::Seconds(4));
  EXPECT_FALSE(out->result.has_value());
  store.Tick(T0() + absl::Seconds(5));
  ASSERT_TRUE(out->result.has_value());
  EXPECT_EQ(out->result->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(out->result->status().message(), HasSubstr("\"gloo/rank3\""));
  EXPECT_THAT(out->result->status().message(), Not(HasSubstr("\"here\"")));

  auto cancelled = std::make_shared<WaitResult>();
  uint64_t ticket = WaitInto(store, 1, kGen, {"never"}, absl::Seconds(5), cancelled);
  EXPECT_TRUE(store.CancelWait(ticket));
  EXPECT_FALSE(store.CancelWait(ticket));
  store.Tick(T0() + absl::Seconds(60));
  ASSERT_TRUE(store.Set(1, kGen, "never", "now").ok());
  EXPECT_FALSE(cancelled->result.has_value());
  EXPECT_EQ(store.held_waits(), 0);
}

TEST(JobStore, GenerationKeysDroppedJobKeysKeptWaitersFenced) {
  JobStore store;
  ASSERT_TRUE(store.Set(1, kGen, "nccl-id", "old").ok());
  ASSERT_TRUE(store.Set(1, kJob, "dataset", "v1").ok());
  auto waiting = std::make_shared<WaitResult>();
  WaitInto(store, 1, kGen, {"gloo/0"}, absl::Seconds(30), waiting);
  {
    Deferred deferred;
    store.AdvanceGeneration(2, &deferred);
    EXPECT_FALSE(waiting->result.has_value()) << "completions wait for the deferred run";
  }
  ASSERT_TRUE(waiting->result.has_value());
  EXPECT_EQ(waiting->result->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.Get(2, kGen, "nccl-id").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*store.Get(2, kJob, "dataset"), "v1");
  absl::Status stale = store.Set(1, kJob, "dataset", "zombie");
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.message(), HasSubstr("generation 1"));
  EXPECT_THAT(stale.message(), HasSubstr("generation 2"));
  EXPECT_EQ(store.Set(0, kJob, "dataset", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Set(3, kJob, "dataset", "x").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(JobStore, HundredThousandWaitersOnOneKeyAllReleasedBySet) {
  JobStore store;
  constexpr int kWaiters = 100'000;
  std::vector<int> got(kWaiters, 0);
  for (int i = 0; i < kWaiters; ++i) {
    store.Wait(1, kGen, {"nccl-id"}, T0(), absl::Minutes(5),
               [&got, i](absl::StatusOr<std::vector<std::string>> r) {
                 got[i] = r.ok() && r->size() == 1 && (*r)[0] == "id-bytes" ? 1 : -1;
               });
  }
  EXPECT_EQ(store.held_waits(), kWaiters);
  ASSERT_TRUE(store.Set(1, kGen, "nccl-id", "id-bytes").ok());
  EXPECT_EQ(store.held_waits(), 0);
  int ok = 0;
  for (int g : got) ok += g == 1;
  EXPECT_EQ(ok, kWaiters);
}

TEST(JobStore, ManyTimedOutWaitsOnAnUnsetKeyDoNotPileUp) {
  JobStore store;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 100; ++i) {
      store.Wait(1, kGen, {"never"}, T0() + absl::Seconds(round), absl::Seconds(1),
                 [](absl::StatusOr<std::vector<std::string>>) {});
    }
    store.Tick(T0() + absl::Seconds(round + 1));
  }
  EXPECT_EQ(store.held_waits(), 0);
  // The key's index was compacted: a Set completes nothing and does not crash.
  ASSERT_TRUE(store.Set(1, kGen, "never", "x").ok());
}

TEST(JobStore, CloseFailsHeldWaitsAndLaterCalls) {
  JobStore store;
  auto out = std::make_shared<WaitResult>();
  WaitInto(store, 1, kGen, {"k"}, absl::Seconds(30), out);
  {
    Deferred deferred;
    store.Close(absl::UnavailableError("coordinator shutting down"), &deferred);
  }
  ASSERT_TRUE(out->result.has_value());
  EXPECT_EQ(out->result->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store.Set(1, kGen, "k", "v").code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace colossus::launcher
