// Per-rank bodies of the collective correctness tests: each runs one operation over
// every dtype, size, reduce op and placement (in/out of place) on an existing
// communicator and returns the first mismatch as a Status naming all of them.
#pragma once

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "colossus/comm/communicator.h"

namespace colossus::comm::testing {

// Element counts tested: 0, 1, a prime, and one large enough for several MiB of data
// (per-rank counts are derived from it for reduce-scatter and all-gather).
std::vector<size_t> TestCounts(DataType t);

absl::Status CheckAllReduce(Communicator& comm);
absl::Status CheckReduceScatter(Communicator& comm);
absl::Status CheckAllGather(Communicator& comm);
absl::Status CheckBroadcast(Communicator& comm);
absl::Status CheckAllToAll(Communicator& comm);
absl::Status CheckSendRecv(Communicator& comm);
absl::Status CheckBarrier(Communicator& comm);

}  // namespace colossus::comm::testing
