// The watchdog: a rank that skips a collective must not hang the others. They fail
// within the timeout with DeadlineExceeded, naming the operation, its sequence number,
// the group and the missing rank; the late rank then fails fast; every process exits.
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "colossus/comm/gloo.h"
#include "gtest/gtest.h"
#include "multiproc.h"

namespace colossus::comm::testing {
namespace {

constexpr absl::Duration kTimeout = absl::Milliseconds(1500);
// Time allowed beyond the timeout for the failing rank to notice, record, and read the
// arrival board (a few store round trips) on a loaded 2-core machine.
constexpr absl::Duration kSlack = absl::Seconds(2);

absl::Status Expect(bool ok, const std::string& what) {
  return ok ? absl::OkStatus() : absl::InternalError(what);
}

absl::Status SkipBody(const RankEnv& env) {
  GlooOptions o;
  o.comm.name = "world";
  o.comm.timeout = kTimeout;
  o.comm.init_timeout = absl::Seconds(20);
  auto comm = CreateGlooCommunicator(env.store, env.rank, env.size, o);
  if (!comm.ok()) return comm.status();
  Communicator& c = **comm;
  if (auto s = c.Barrier().Wait(); !s.ok()) return s;  // seq 1, everyone

  if (env.rank == 2) {
    // Skip seq 2 (the all-reduce below): be late by more than the timeout, then try
    // the next collective. The group is broken by then; it must fail fast, not hang.
    absl::SleepFor(kTimeout + absl::Milliseconds(1500));
    const absl::Time start = absl::Now();
    absl::Status s = c.Barrier().Wait();
    const absl::Duration took = absl::Now() - start;
    std::cerr << "[rank " << env.rank << "] " << s << "\n";
    if (auto e = Expect(!s.ok(), "the late rank's barrier succeeded"); !e.ok()) return e;
    return Expect(took < absl::Seconds(1),
                  absl::StrCat("the late rank took ", absl::FormatDuration(took), " to fail: ",
                               s.ToString()));
  }

  float x[1009];
  for (int i = 0; i < 1009; ++i) x[i] = static_cast<float>(i);
  const absl::Time start = absl::Now();
  absl::Status s = c.AllReduce(x, x, 1009, DataType::kF32, ReduceOp::kSum).Wait();
  const absl::Duration took = absl::Now() - start;
  const std::string m(s.message());
  std::cerr << "[rank " << env.rank << "] " << s << "\n";
  const std::string report = absl::StrCat("after ", absl::FormatDuration(took), ": ", s.ToString());
  if (auto e = Expect(s.code() == absl::StatusCode::kDeadlineExceeded, "not DeadlineExceeded " + report); !e.ok()) return e;
  if (auto e = Expect(took < kTimeout + kSlack, "too slow " + report); !e.ok()) return e;
  for (const char* needle : {"all_reduce", "seq 2", "group 'world'", "did not arrive at seq 2",
                             "2 (last at seq 1 barrier)"}) {
    if (auto e = Expect(absl::StrContains(m, needle), absl::StrCat("no '", needle, "' in ", report)); !e.ok()) return e;
  }
  // Ranks 0 and 1 arrived: neither is named as missing.
  for (const char* absent : {" 0 (", " 1 ("}) {
    if (auto e = Expect(!absl::StrContains(m, absent), absl::StrCat("names an arrived rank: ", report)); !e.ok()) return e;
  }
  // Broken for good: the next call fails at once.
  const absl::Time again = absl::Now();
  absl::Status next = c.Barrier().Wait();
  if (auto e = Expect(!next.ok() && absl::Now() - again < absl::Milliseconds(200), "not broken: " + next.ToString()); !e.ok()) return e;
  return absl::OkStatus();
}

TEST(WatchdogTest, ASkippedCollectiveFailsTheOthersNamingTheMissingRank) {
  const absl::Time start = absl::Now();
  std::vector<ChildResult> results = RunRanks(3, SkipBody, absl::Seconds(30));
  ExpectAllOk(results);
  // No process hung: the whole group exited well before the harness deadline.
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
}

}  // namespace
}  // namespace colossus::comm::testing
