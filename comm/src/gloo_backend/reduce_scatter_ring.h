// Ring reduce-scatter over Gloo's pairs, which Gloo 0.5 lacks in its options API.
//
// n ranks, the input cut into n chunks of `chunk_count` elements. At step k (0..n-2)
// rank r sends its partial sum of chunk (r-k-1) mod n to rank r+1 and receives the
// partial of chunk (r-k-2) mod n from rank r-1, adding its own input to it. After n-1
// steps rank r holds chunk r reduced over every rank. Each rank sends and receives
// (n-1)/n of the input: the bandwidth-optimal volume, the same as the first half of
// Gloo's ring all-reduce (the alternative, all-reduce then slice, moves twice that).
// Chunks are not segmented, so the reduction of a step does not overlap the transfer
// of the next; that costs at most the time of one local reduction per step.
//
// Aliasing: `out` may alias the input's own chunk (in-place reduce-scatter) or any
// other part of the input: every input chunk except the rank's own is read before the
// last step, which reads the own chunk and writes `out`, element by element.
//
// Throws Gloo's exceptions (gloo::IoException on a timeout or a dead peer), like
// Gloo's own algorithms; the communicator converts them. `timeout` bounds the whole
// operation. REQUIRES: context->size >= 2, chunk_count > 0.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "cpu/reduce_kernels.h"
#include "gloo/context.h"

namespace colossus::comm::internal {

// Slot prefixes of our own algorithms, clear of Gloo's (0x01..0x08 in gloo/types.h).
constexpr uint8_t kReduceScatterSlotPrefix = 0x40;
constexpr uint8_t kPointToPointSlotPrefix = 0x41;

void RingReduceScatter(const std::shared_ptr<gloo::Context>& context, const void* in, void* out,
                       size_t chunk_count, size_t element_size, ReduceFn reduce, uint32_t tag,
                       std::chrono::milliseconds timeout);

}  // namespace colossus::comm::internal
