// OpenMP helpers shared by the CPU ops: per-thread scratch that outlives a call, and
// the column split that keeps reductions across rows independent of the thread count.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace colossus::kernels::cpu {

// Below this many elements of work a parallel region costs more (a fork and a join,
// microseconds) than it saves; ops pass `if(work >= kMinParallelWork)` to OpenMP.
constexpr int64_t kMinParallelWork = int64_t{1} << 14;

// A buffer of at least n elements owned by the calling thread, grown on demand and
// kept for the thread's lifetime, so hot paths allocate only on their first call with
// a new largest size. OpenMP's worker threads persist between parallel regions, so the
// buffers persist too. `Slot` tells apart buffers one thread needs at the same time;
// the contents are unspecified on return and stay valid until the same thread asks
// for the same (F, Slot) again.
template <typename F, int Slot>
F* ThreadScratch(int64_t n) {
  thread_local std::vector<F> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

// The half-open range of columns [begin, end) that thread `tid` of `nthreads` owns
// when C columns are split into equal chunks, rounded to 16 elements (a 64-byte cache
// line of floats) so that threads never write the same line. Summing a column over
// all rows inside one thread, in row order, gives the same bits whatever the split.
struct ColumnRange {
  int64_t begin;
  int64_t end;
};
inline ColumnRange ColumnsOfThread(int64_t C, int tid, int nthreads) {
  int64_t chunk = (C + nthreads - 1) / nthreads;
  chunk = (chunk + 15) / 16 * 16;
  const int64_t begin = std::min<int64_t>(C, chunk * tid);
  return {begin, std::min<int64_t>(C, begin + chunk)};
}

}  // namespace colossus::kernels::cpu
