// A process SIGKILLed in the middle of a collective: the survivors report the failure
// within the timeout, abort, re-create their group through a fresh Store prefix, and
// run collectives correctly in it.
#include <signal.h>

#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "colossus/comm/gloo.h"
#include "colossus/comm/prefix_store.h"
#include "gtest/gtest.h"
#include "multiproc.h"

namespace colossus::comm::testing {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(3);
constexpr int kVictim = 2;

absl::Status KillBody(const RankEnv& env) {
  GlooOptions o;
  o.comm.timeout = kTimeout;
  o.comm.init_timeout = absl::Seconds(20);
  auto gen0 = CreateGlooCommunicator(std::make_shared<PrefixStore>(env.store, "gen0"), env.rank,
                                     env.size, o);
  if (!gen0.ok()) return gen0.status();
  Communicator& c = **gen0;

  std::vector<float> buf(1 << 20);  // 4 MiB: each all-reduce takes milliseconds
  if (env.rank == kVictim) {
    // Die from another thread while the main thread is inside an all-reduce.
    std::thread([] {
      absl::SleepFor(absl::Milliseconds(300));
      raise(SIGKILL);
    }).detach();
  }
  absl::Time last_ok = absl::Now();
  absl::Status failure;
  for (int i = 0; i < 100000 && failure.ok(); ++i) {
    failure = c.AllReduce(buf.data(), buf.data(), buf.size(), DataType::kF32, ReduceOp::kMax).Wait();
    if (failure.ok()) last_ok = absl::Now();
  }
  if (env.rank == kVictim) return absl::InternalError("the victim survived");
  const absl::Duration detect = absl::Now() - last_ok;
  const std::string report = absl::StrCat("rank ", env.rank, " failed ",
                                          absl::FormatDuration(detect), " after its last success: ",
                                          failure.ToString());
  std::cerr << "[" << report << "]\n";
  if (failure.code() != absl::StatusCode::kUnavailable &&
      failure.code() != absl::StatusCode::kDeadlineExceeded) {
    return absl::InternalError("unexpected code: " + report);
  }
  if (detect > kTimeout + absl::Seconds(2)) return absl::InternalError("too slow: " + report);

  // Recover: abort, then the survivors form generation 1 under a fresh prefix.
  c.Abort();
  auto gen1 = CreateGlooCommunicator(std::make_shared<PrefixStore>(env.store, "gen1"), env.rank,
                                     env.size - 1, o);
  if (!gen1.ok()) return gen1.status();
  for (int round = 0; round < 3; ++round) {
    std::vector<int64_t> v(1009);
    for (size_t i = 0; i < v.size(); ++i) v[i] = (int64_t{env.rank} + 1) * 1000000007 + static_cast<int64_t>(i) + round;
    if (auto s = (*gen1)->AllReduce(v.data(), v.data(), v.size(), DataType::kI64, ReduceOp::kSum).Wait(); !s.ok()) {
      return s;
    }
    for (size_t i = 0; i < v.size(); ++i) {
      const int64_t want = 3 * int64_t{1000000007} + 2 * (static_cast<int64_t>(i) + round);
      if (v[i] != want) {
        return absl::InternalError(absl::StrCat("gen1 element ", i, " = ", v[i], ", want ", want));
      }
    }
  }
  return absl::OkStatus();
}

TEST(FaultTest, SurvivorsOfAKilledRankFailWithinTheTimeoutAndRecover) {
  std::vector<ChildResult> results = RunRanks(3, KillBody, absl::Seconds(60));
  ASSERT_EQ(results.size(), 3u);
  for (const ChildResult& r : results) {
    if (r.rank == kVictim) {
      EXPECT_EQ(r.signal, SIGKILL) << r.Describe();
    } else {
      EXPECT_TRUE(r.ok()) << r.Describe();
    }
  }
}

}  // namespace
}  // namespace colossus::comm::testing
