// Who ends up where after Communicator::Split: ranks with the same color >= 0 form a
// group, ordered by (key, old rank) as in MPI_Comm_split and ncclCommSplit.
#pragma once

#include <vector>

namespace colossus::comm::internal {

struct SplitRequest {
  int color = 0;
  int key = 0;
};

struct SplitPlacement {
  int rank = -1;  // -1: no group (color == kSplitNoColor)
  int size = 0;
};

// requests[i] is old rank i's (color, key).
SplitPlacement PlanSplit(const std::vector<SplitRequest>& requests, int my_rank);

}  // namespace colossus::comm::internal
