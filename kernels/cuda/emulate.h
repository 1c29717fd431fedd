// A host stand-in for the CUDA features the backend's own kernels use (everything but
// attention, which has its own, and cuBLASLt), so that their exact source runs on a CPU
// in a unit test (tests/kernels/cuda_emulation_test.cc) on machines without a GPU.
// Test-only: common.cuh includes it when COLOSSUS_CUDA_EMULATE is defined, never the
// library.
//
// What it models:
//   * COLOSSUS_LAUNCH runs the grid's blocks one after another, a block's CUDA threads
//     as fibers on the calling host thread (emulate_fibers.h) that switch at barriers
//     and shuffles, in ascending or, every other launch, descending order;
//   * threadIdx, blockIdx, blockDim, gridDim;
//   * __syncthreads as a barrier of the block's live threads (a thread that returned no
//     longer counts, as on the GPU);
//   * __shfl_xor_sync as an exchange among the 32 lanes of a warp, all of which must
//     take part (a lane that returned early deadlocks the block, which aborts the test:
//     the GPU's behaviour is undefined there too);
//   * __shared__ variables as function statics: one instance, shared by the block's
//     threads, reused by the next block (blocks never overlap);
//   * atomicAdd on float as a locked read-modify-write.
// It does not model timing, memory coalescing or the hardware's reduced-precision
// intrinsics (the kernels use none). Memory is host memory: "device" pointers are
// plain host pointers in the test.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "cuda/emulate_fibers.h"

#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace colossus::kernels::cuda {

// Device math the kernels call unqualified.
using std::isnan;
using std::max;
using std::min;

namespace emu {

struct Block {
  dim3 grid_dim, block_dim, block_idx;
  std::unique_ptr<fiber::Barrier> barrier;
  std::vector<fiber::Barrier> warp_barriers;
  std::vector<uint64_t> slots;  // one per thread, for shuffles
};

struct Thread {
  Block* block = nullptr;
  dim3 thread_idx;
  unsigned tid = 0;
};

// The running launch's threads, one per CUDA thread of a block; the running fiber's is
// the current CUDA thread.
inline thread_local std::vector<Thread>* launch_threads = nullptr;
inline Thread& Self() { return (*launch_threads)[static_cast<size_t>(fiber::CurrentIndex())]; }
inline std::mutex& AtomicMutex() {
  static std::mutex mu;
  return mu;
}

inline void SyncThreads() { Self().block->barrier->ArriveAndWait(); }

template <typename T>
T ShflXor(T value, int lane_mask) {
  static_assert(sizeof(T) <= 8, "shuffles of at most 8 bytes");
  const Thread& me = Self();
  Block& b = *me.block;
  const unsigned warp = me.tid / 32, lane = me.tid % 32;
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  b.slots[me.tid] = bits;
  b.warp_barriers[warp].ArriveAndWait();
  const uint64_t other = b.slots[warp * 32 + (lane ^ static_cast<unsigned>(lane_mask))];
  // A second barrier: no lane overwrites its slot for the next shuffle before every lane
  // has read this one.
  b.warp_barriers[warp].ArriveAndWait();
  T out;
  std::memcpy(&out, &other, sizeof(T));
  return out;
}

inline float AtomicAdd(float* address, float value) {
  std::lock_guard<std::mutex> lock(AtomicMutex());
  const float old = *address;
  *address = old + value;
  return old;
}

// Runs kernel(args...) over the grid: one fiber per thread of a block, the same fibers
// for every block in turn (a barrier between blocks). Blocks of more than 1024 threads
// or with a partial warp are refused, as the kernels never launch them.
template <typename... KernelArgs, typename... Args>
void Launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block_dim, Args&&... args) {
  const unsigned threads = block_dim.x * block_dim.y * block_dim.z;
  if (threads == 0 || threads > 1024 || threads % 32 != 0 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0) {
    std::fprintf(stderr, "emulated launch: bad geometry grid (%u,%u,%u) block %u\n", grid.x,
                 grid.y, grid.z, threads);
    std::abort();
  }
  const unsigned blocks = grid.x * grid.y * grid.z;
  Block b;
  auto reset = [&](unsigned index) {  // the state of block `index`, fresh barriers
    b.grid_dim = grid;
    b.block_dim = block_dim;
    b.block_idx = dim3(index % grid.x, index / grid.x % grid.y, index / (grid.x * grid.y));
    b.barrier = std::make_unique<fiber::Barrier>(static_cast<int>(threads));
    b.warp_barriers.assign(threads / 32, fiber::Barrier(32));
    b.slots.assign(threads, 0);
  };
  reset(0);
  std::vector<Thread> state(threads);
  for (unsigned t = 0; t < threads; ++t) {
    state[t].block = &b;
    state[t].tid = t;
    state[t].thread_idx = dim3(t % block_dim.x, t / block_dim.x % block_dim.y,
                               t / (block_dim.x * block_dim.y));
  }
  fiber::Barrier between_blocks(static_cast<int>(threads));
  std::vector<Thread>* const outer = launch_threads;
  launch_threads = &state;
  fiber::RunAll(static_cast<int>(threads), [&](int t) {
    for (unsigned index = 0; index < blocks; ++index) {
      kernel(args...);  // each call gets its own copies of the parameters
      // Gone from the block's later barriers, as a returned thread is on the GPU.
      b.barrier->ArriveAndDrop();
      b.warp_barriers[static_cast<size_t>(t) / 32].ArriveAndDrop();
      between_blocks.ArriveAndWait();  // every thread is done with this block
      if (t == 0 && index + 1 < blocks) reset(index + 1);
      between_blocks.ArriveAndWait();  // the next block's state is ready
    }
  });
  launch_threads = outer;
}

}  // namespace emu
}  // namespace colossus::kernels::cuda

#define threadIdx (::colossus::kernels::cuda::emu::Self().thread_idx)
#define blockIdx (::colossus::kernels::cuda::emu::Self().block->block_idx)
#define blockDim (::colossus::kernels::cuda::emu::Self().block->block_dim)
#define gridDim (::colossus::kernels::cuda::emu::Self().block->grid_dim)
#define __syncthreads() ::colossus::kernels::cuda::emu::SyncThreads()
#define __shfl_xor_sync(mask, value, lane_mask) \
  ::colossus::kernels::cuda::emu::ShflXor(value, lane_mask)
#define atomicAdd(address, value) ::colossus::kernels::cuda::emu::AtomicAdd(address, value)
#define COLOSSUS_LAUNCH(kernel, grid, block, stream, ...) \
  ::colossus::kernels::cuda::emu::Launch(kernel, dim3(grid), dim3(block), __VA_ARGS__)
#define COLOSSUS_COPY_ASYNC(dst, src, bytes, stream) std::memmove((dst), (src), (bytes))
