// Element-wise reductions on host memory for every DataType, used by the Gloo backend
// (Gloo's own math has no bf16/f16 and sums integers with signed overflow).
//
// bf16 and f16 are widened to float, combined, and rounded back once per call: the
// same per-step rounding as NCCL's ring on those types.
#pragma once

#include <cstddef>

#include "colossus/comm/types.h"

namespace colossus::comm::internal {

// out[i] = a[i] (op) b[i] for i < n. out may alias a or b. kAvg reduces as kSum (the
// division happens once, at the end: DivideInPlace).
using ReduceFn = void (*)(void* out, const void* a, const void* b, size_t n);
ReduceFn GetReduceFn(DataType dtype, ReduceOp op);

// data[i] /= divisor: float types by float division then rounding, integers by C++
// division (truncation toward zero).
void DivideInPlace(void* data, size_t n, DataType dtype, int divisor);

}  // namespace colossus::comm::internal
