// Every collective, dtype, size (0, 1, prime, several MiB) and placement, on 2, 3 and
// 4 real processes over Gloo's TCP transport, against values computed from the rank.
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "collective_checks.h"
#include "colossus/comm/gloo.h"
#include "gtest/gtest.h"
#include "multiproc.h"

namespace colossus::comm::testing {
namespace {

using Check = absl::Status (*)(Communicator&);

struct Case {
  const char* name;
  Check check;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

constexpr Case kCases[] = {
    {"AllReduce", &CheckAllReduce},     {"ReduceScatter", &CheckReduceScatter},
    {"AllGather", &CheckAllGather},     {"Broadcast", &CheckBroadcast},
    {"AllToAll", &CheckAllToAll},
    {"SendRecv", &CheckSendRecv},       {"Barrier", &CheckBarrier},
};

class CollectivesTest : public ::testing::TestWithParam<std::tuple<Case, int>> {};

TEST_P(CollectivesTest, MatchesValuesComputedFromRanks) {
  const auto [c, n] = GetParam();
  const Check check = c.check;
  std::vector<ChildResult> results = RunRanks(
      n,
      [check](const RankEnv& env) -> absl::Status {
        GlooOptions options;
        options.comm.timeout = absl::Seconds(30);
        options.comm.init_timeout = absl::Seconds(30);
        absl::StatusOr<std::unique_ptr<Communicator>> comm =
            CreateGlooCommunicator(env.store, env.rank, env.size, options);
        if (!comm.ok()) return comm.status();
        if ((*comm)->rank() != env.rank || (*comm)->size() != env.size) {
          return absl::InternalError("communicator reports the wrong rank or size");
        }
        return check(**comm);
      },
      absl::Seconds(90));
  ExpectAllOk(results);
}

INSTANTIATE_TEST_SUITE_P(Gloo, CollectivesTest,
                         ::testing::Combine(::testing::ValuesIn(kCases), ::testing::Values(2, 3, 4)),
                         [](const auto& info) {
                           return absl::StrCat(std::get<0>(info.param).name, "_",
                                               std::get<1>(info.param), "ranks");
                         });

}  // namespace
}  // namespace colossus::comm::testing
