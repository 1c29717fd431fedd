// Which samples each data-parallel rank trains on: the global batch and its split.
//
// One optimizer step consumes the global batch: G = B x k x dp samples, where B is
// training.batch_size (sequences per micro-batch), k the micro-batches per rank
// (training.grad_accum, or derived from training.global_batch) and dp the number of
// data-parallel ranks. Step s consumes global samples [s*G, (s+1)*G), in order, of the
// DataLoader's stream (sample g is a pure function of (seed, g), data.h).
//
// The split is CONTIGUOUS: rank r takes the slice [s*G + r*k*B, s*G + (r+1)*k*B), and its
// micro-batch m is the B samples starting at s*G + (r*k + m)*B. So rank r processes the
// micro-batches r*k .. r*k + k-1 of a one-rank run with k*dp micro-batches, and a step's
// samples depend only on G, never on how it is split: a job resumed on another number
// of ranks with the same G trains on exactly the same samples (ARCHITECTURE.md,
// principle 3). With k = 1 this is data.h's "rank r of R reads Batch(s*R*B + r*B, B)".
//
// Gradients are averaged over the G samples (each micro-batch's mean loss scaled by
// 1/(k*dp) and summed over ranks), so the update equals the one-rank update up to
// floating-point summation order.
#pragma once

#include <cstdint>

namespace colossus::parallel {

// First global sample index of micro-batch `micro` (0..k-1) of rank `rank` (0..dp-1)
// at optimizer step `step`, with micro-batches of B samples.
inline int64_t FirstSampleOf(int64_t step, int micro, int rank, int dp, int B, int k) {
  const int64_t global_batch = static_cast<int64_t>(B) * k * dp;
  return step * global_batch + (static_cast<int64_t>(rank) * k + micro) * B;
}

}  // namespace colossus::parallel
