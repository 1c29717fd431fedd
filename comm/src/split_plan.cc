#include "split_plan.h"

#include <algorithm>
#include <tuple>

#include "colossus/check.h"

namespace colossus::comm::internal {

SplitPlacement PlanSplit(const std::vector<SplitRequest>& requests, int my_rank) {
  CHECK(my_rank >= 0 && static_cast<size_t>(my_rank) < requests.size()) << "rank " << my_rank;
  const int color = requests[my_rank].color;
  if (color < 0) return {};
  std::vector<std::pair<int, int>> members;  // (key, old rank)
  for (int r = 0; r < static_cast<int>(requests.size()); ++r) {
    if (requests[r].color == color) members.emplace_back(requests[r].key, r);
  }
  std::sort(members.begin(), members.end());
  SplitPlacement p;
  p.size = static_cast<int>(members.size());
  for (int i = 0; i < p.size; ++i) {
    if (members[i].second == my_rank) p.rank = i;
  }
  return p;
}

}  // namespace colossus::comm::internal
