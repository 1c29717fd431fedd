// A host-side stand-in for the handful of CUDA features the attention kernels use, so
// that their exact source (attention_*_kernels.cuh) and their launchers (attention*.cu)
// run on a CPU in unit tests (tests/kernels/cuda_emulated_attention.cc compiles them).
// Test-only: included by attention_internal.cuh when COLOSSUS_ATTN_EMULATE is defined,
// never by the library.
//
// What it models, from the PTX ISA's definitions rather than from the kernels' use:
//   * the blocks of a grid one after another, a block's CUDA threads as fibers on the
//     calling host thread (emulate_fibers.h), switching at barriers and collectives;
//   * __syncthreads as a barrier of the block, warp collectives (mma.sync m16n8k16 bf16,
//     ldmatrix x4 plain and .trans, shfl.xor) as an exchange among the warp's 32 lanes,
//     with every lane required to arrive at the same collective;
//   * cp.async with zero fill, landing either at issue or at the latest moment the ISA
//     allows (the thread's cp.async.wait_group), chosen per launch;
//   * dynamic shared memory, filled with 0xFF bytes (bf16 and f32 NaN) at block start;
//   * the launchers' host side: launches (1-D blocks, 2-D grids), the opt-in above 48 KB
//     of dynamic shared memory (227 KB at most on sm_90), asynchronous zero fills.
// And what it checks, reported through Launch's error list:
//   * races on shared memory: a read or write of a word that another thread wrote, or a
//     write of a word another thread read, with no __syncthreads in between; any access
//     to a word while a cp.async to it is in flight; reads of words never written;
//   * ldmatrix row addresses that are not 16-byte aligned or leave shared memory, and
//     cp.async destinations likewise; copies never waited for at kernel exit;
//   * lanes of one warp arriving at different collectives;
//   * launches beyond their shared-memory allowance or with a geometry the GPU refuses.
// It does not model timing, bank conflicts, or the tensor cores' internal rounding (the
// emulated mma accumulates in fp32 like theirs, in a fixed order).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/emulate_fibers.h"

#define __launch_bounds__(...)
#define COLOSSUS_ATTN_DYNAMIC_SMEM(name) \
  unsigned char* name = ::colossus::kernels::cuda::attn::emu::Smem()
#define threadIdx (::colossus::kernels::cuda::attn::emu::Self().thread_idx)
#define blockIdx (::colossus::kernels::cuda::attn::emu::Self().block->block_idx)
#define blockDim (::colossus::kernels::cuda::attn::emu::Self().block->block_dim)
#define gridDim (::colossus::kernels::cuda::attn::emu::Self().block->grid_dim)
#define __syncthreads() ::colossus::kernels::cuda::attn::emu::SyncThreads()
#define __shfl_xor_sync(mask, value, lane_mask) \
  ::colossus::kernels::cuda::attn::emu::ShflXor(value, lane_mask)

namespace colossus::kernels::cuda::attn {

using std::max;
using std::min;

namespace emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

enum class CopyTiming { kAtIssue, kAtWait };

// Race-detector state of one 4-byte word of shared memory. Epoch = number of
// __syncthreads the accessing thread has passed; equal epochs mean no barrier between.
struct Shadow {
  int write_epoch = -1, writer = -1;
  int read_epoch = -1, reader = -1;  // reader -2: several threads
  int in_flight = 0;                 // cp.async copies to this word not yet waited for
};

enum class Op : uint32_t { kNone, kMma, kLdMatrix, kLdMatrixTrans, kShfl };

struct Block {
  Dim3 grid_dim, block_dim, block_idx;
  CopyTiming timing = CopyTiming::kAtIssue;
  std::vector<unsigned char> smem;
  std::vector<Shadow> shadow;
  std::mutex mu;  // guards smem, shadow, errors, and global atomics
  std::vector<std::string>* errors = nullptr;
  std::unique_ptr<fiber::Barrier> block_barrier;
  std::vector<fiber::Barrier> warp_barriers;
  struct Slot {
    Op op = Op::kNone;
    std::array<uint32_t, 10> v{};
  };
  std::vector<Slot> slots;  // one per thread, for warp collectives

  void Error(const std::string& e) {  // REQUIRES: mu held
    if (errors->size() < 20) errors->push_back(e);
  }
};

struct Copy {
  uint32_t dst;
  const void* src;
  int bytes;
  bool valid;
};

struct Thread {
  Block* block = nullptr;
  Dim3 thread_idx;
  int tid = 0;
  int epoch = 0;
  std::vector<Copy> open_group;
  std::deque<std::vector<Copy>> groups;
};

// The running launch's threads, by fiber: the current CUDA thread is the running fiber's.
inline thread_local std::vector<Thread*>* launch_threads = nullptr;
inline Thread& Self() { return *(*launch_threads)[static_cast<size_t>(fiber::CurrentIndex())]; }
inline unsigned char* Smem() { return Self().block->smem.data(); }

inline std::string Where(const Thread& t) {
  return "block (" + std::to_string(t.block->block_idx.x) + "," +
         std::to_string(t.block->block_idx.y) + ") thread " + std::to_string(t.tid) + " epoch " +
         std::to_string(t.epoch);
}

// ---- shared-memory accesses, checked (REQUIRES: block mutex held) ------------------
inline bool InSmem(Block& b, uint32_t addr, int bytes) {
  return static_cast<size_t>(addr) + bytes <= b.smem.size();
}

inline void CheckRead(Thread& t, uint32_t addr, int bytes) {
  Block& b = *t.block;
  if (!InSmem(b, addr, bytes)) {
    b.Error(Where(t) + ": shared read out of bounds at " + std::to_string(addr));
    return;
  }
  for (uint32_t w = addr / 4; w <= (addr + bytes - 1) / 4; ++w) {
    Shadow& s = b.shadow[w];
    if (s.in_flight > 0) {
      b.Error(Where(t) + ": reads word " + std::to_string(w) +
              " while a cp.async to it is in flight");
    } else if (s.write_epoch < 0) {
      b.Error(Where(t) + ": reads word " + std::to_string(w) + ", never written");
    } else if (s.write_epoch == t.epoch && s.writer != t.tid) {
      b.Error(Where(t) + ": reads word " + std::to_string(w) + " written by thread " +
              std::to_string(s.writer) + " with no barrier between");
    }
    if (s.read_epoch == t.epoch && s.reader != t.tid) {
      s.reader = -2;
    } else if (s.read_epoch != t.epoch) {
      s.read_epoch = t.epoch;
      s.reader = t.tid;
    }
  }
}

inline void CheckWrite(Thread& t, uint32_t addr, int bytes, bool async) {
  Block& b = *t.block;
  if (!InSmem(b, addr, bytes)) {
    b.Error(Where(t) + ": shared write out of bounds at " + std::to_string(addr));
    return;
  }
  for (uint32_t w = addr / 4; w <= (addr + bytes - 1) / 4; ++w) {
    Shadow& s = b.shadow[w];
    if (s.in_flight > 0) {
      b.Error(Where(t) + ": writes word " + std::to_string(w) +
              " while a cp.async to it is in flight");
    }
    if (s.read_epoch == t.epoch && s.reader != t.tid) {
      b.Error(Where(t) + ": writes word " + std::to_string(w) + " read by thread " +
              std::to_string(s.reader) + " with no barrier between");
    }
    if (s.write_epoch == t.epoch && s.writer != t.tid) {
      b.Error(Where(t) + ": writes word " + std::to_string(w) + " written by thread " +
              std::to_string(s.writer) + " with no barrier between");
    }
    if (async) {
      ++s.in_flight;
    } else {
      s.write_epoch = t.epoch;
      s.writer = t.tid;
    }
  }
}

inline void LandCopy(Thread& t, const Copy& c) {  // data only
  Block& b = *t.block;
  if (!InSmem(b, c.dst, c.bytes)) return;
  if (c.valid) {
    std::memcpy(b.smem.data() + c.dst, c.src, c.bytes);
  } else {
    std::memset(b.smem.data() + c.dst, 0, c.bytes);
  }
}

inline void FinishCopy(Thread& t, const Copy& c) {  // the copy is complete for this thread
  Block& b = *t.block;
  if (b.timing == CopyTiming::kAtWait) LandCopy(t, c);
  if (!InSmem(b, c.dst, c.bytes)) return;
  for (uint32_t w = c.dst / 4; w <= (c.dst + c.bytes - 1) / 4; ++w) {
    Shadow& s = b.shadow[w];
    --s.in_flight;
    s.write_epoch = t.epoch;
    s.writer = t.tid;
  }
}

// ---- the CUDA features --------------------------------------------------------------
inline void SyncThreads() {
  Thread& t = Self();
  t.block->block_barrier->ArriveAndWait();
  ++t.epoch;
}

// Runs one warp collective: every lane deposits `mine`, then computes its result from all
// 32 deposits. Two barrier phases, so slots are not overwritten while still being read.
template <typename F>
auto Collective(Op op, const std::array<uint32_t, 10>& mine, F&& compute) {
  Thread& t = Self();
  Block& b = *t.block;
  const int warp = t.tid / 32;
  b.slots[t.tid].op = op;
  b.slots[t.tid].v = mine;
  b.warp_barriers[warp].ArriveAndWait();
  const Block::Slot* lanes = &b.slots[warp * 32];
  for (int l = 0; l < 32; ++l) {
    if (lanes[l].op != op) {
      std::lock_guard<std::mutex> lock(b.mu);
      b.Error(Where(t) + ": lanes of warp " + std::to_string(warp) + " at different collectives");
      break;
    }
  }
  auto result = compute(lanes, t.tid % 32);
  b.warp_barriers[warp].ArriveAndWait();
  return result;
}

inline float ShflXor(float v, int lane_mask) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  std::array<uint32_t, 10> mine{};
  mine[0] = bits;
  mine[1] = static_cast<uint32_t>(lane_mask);
  return Collective(Op::kShfl, mine, [](const Block::Slot* lanes, int lane) {
    float r;
    std::memcpy(&r, &lanes[lane ^ lanes[lane].v[1]].v[0], 4);
    return r;
  });
}

inline float Bf16Bits(uint32_t word, int half) {
  const uint16_t h = static_cast<uint16_t>(half ? word >> 16 : word & 0xffffu);
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, fragments per the PTX ISA
// (g = lane / 4, t = lane % 4): a{0,1}: A[g][2t+{0,1}], a{2,3}: A[g+8][2t+{0,1}],
// a{4,5}: A[g][2t+8+{0,1}], a{6,7}: A[g+8][2t+8+{0,1}]; b{0,1}: B[2t+{0,1}][g],
// b{2,3}: B[2t+8+{0,1}][g]; c{0,1}: C[g][2t+{0,1}], c{2,3}: C[g+8][2t+{0,1}].
inline void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  std::array<uint32_t, 10> mine{};
  for (int i = 0; i < 4; ++i) mine[i] = a[i];
  mine[4] = b0;
  mine[5] = b1;
  const auto out = Collective(Op::kMma, mine, [&](const Block::Slot* lanes, int lane) {
    float A[16][16], B[16][8];
    for (int L = 0; L < 32; ++L) {
      const int g = L / 4, t = L % 4;
      const auto& v = lanes[L].v;
      for (int e = 0; e < 2; ++e) {
        A[g][2 * t + e] = Bf16Bits(v[0], e);
        A[g + 8][2 * t + e] = Bf16Bits(v[1], e);
        A[g][2 * t + 8 + e] = Bf16Bits(v[2], e);
        A[g + 8][2 * t + 8 + e] = Bf16Bits(v[3], e);
        B[2 * t + e][g] = Bf16Bits(v[4], e);
        B[2 * t + 8 + e][g] = Bf16Bits(v[5], e);
      }
    }
    const int g = lane / 4, t = lane % 4;
    std::array<float, 4> r;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
      float acc = c[i];
      for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
      r[i] = acc;
    }
    return r;
  });
  for (int i = 0; i < 4; ++i) c[i] = out[i];
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8i..8i+7 address the rows of
// matrix i; register i gets, plain, row g cols 2t..2t+1; .trans, rows 2t..2t+1 col g.
inline void LdMatrix(uint32_t (&r)[4], uint32_t addr, bool trans) {
  std::array<uint32_t, 10> mine{};
  mine[0] = addr;
  const auto out = Collective(
      trans ? Op::kLdMatrixTrans : Op::kLdMatrix, mine, [&](const Block::Slot* lanes, int lane) {
        Thread& t = Self();
        Block& b = *t.block;
        std::lock_guard<std::mutex> lock(b.mu);
        std::array<uint32_t, 4> res{};
        const int g = lane / 4, q = lane % 4;
        for (int i = 0; i < 4; ++i) {
          for (int row = 0; row < 8; ++row) {  // every row address of matrix i, checked once
            const uint32_t ra = lanes[8 * i + row].v[0];
            if (ra % 16 != 0 || !InSmem(b, ra, 16)) {
              b.Error(Where(t) + ": ldmatrix row address " + std::to_string(ra) +
                      " unaligned or out of shared memory");
              return res;
            }
          }
          if (!trans) {
            const uint32_t a = lanes[8 * i + g].v[0] + 4 * q;
            CheckRead(t, a, 4);
            std::memcpy(&res[i], b.smem.data() + a, 4);
          } else {
            const uint32_t a0 = lanes[8 * i + 2 * q].v[0] + 2 * g;
            const uint32_t a1 = lanes[8 * i + 2 * q + 1].v[0] + 2 * g;
            CheckRead(t, a0, 2);
            CheckRead(t, a1, 2);
            uint16_t lo, hi;
            std::memcpy(&lo, b.smem.data() + a0, 2);
            std::memcpy(&hi, b.smem.data() + a1, 2);
            res[i] = lo | (static_cast<uint32_t>(hi) << 16);
          }
        }
        return res;
      });
  for (int i = 0; i < 4; ++i) r[i] = out[i];
}

inline void CpAsync(uint32_t dst, const void* src, int bytes, bool valid) {
  Thread& t = Self();
  Block& b = *t.block;
  std::lock_guard<std::mutex> lock(b.mu);
  if (dst % bytes != 0 || reinterpret_cast<uintptr_t>(src) % bytes != 0) {
    b.Error(Where(t) + ": cp.async address not aligned to its size");
  }
  const Copy c{dst, src, bytes, valid};
  CheckWrite(t, dst, bytes, /*async=*/true);
  if (b.timing == CopyTiming::kAtIssue) LandCopy(t, c);
  t.open_group.push_back(c);
}

inline void CpAsyncCommit() {
  Thread& t = Self();
  t.groups.push_back(std::move(t.open_group));
  t.open_group.clear();
}

inline void CpAsyncWait(int n) {
  Thread& t = Self();
  std::lock_guard<std::mutex> lock(t.block->mu);
  while (static_cast<int>(t.groups.size()) > n) {
    for (const Copy& c : t.groups.front()) FinishCopy(t, c);
    t.groups.pop_front();
  }
}

inline float LoadSharedF32(const float* p) {
  Thread& t = Self();
  std::lock_guard<std::mutex> lock(t.block->mu);
  const uint32_t addr = static_cast<uint32_t>(reinterpret_cast<const unsigned char*>(p) - Smem());
  CheckRead(t, addr, 4);
  return *p;
}

inline void StoreShared32(void* p, uint32_t v) {
  Thread& t = Self();
  std::lock_guard<std::mutex> lock(t.block->mu);
  const uint32_t addr = static_cast<uint32_t>(static_cast<unsigned char*>(p) - Smem());
  CheckWrite(t, addr, 4, /*async=*/false);
  std::memcpy(p, &v, 4);
}

inline void AtomicAddF32(float* p, float v) {
  std::lock_guard<std::mutex> lock(Self().block->mu);
  *p += v;
}

// Runs `kernel()` (a call of the kernel function with its arguments) for every block of
// `grid`, each with block.x threads (1-D blocks only) and `smem_bytes` of dynamic shared
// memory. Problems found are appended to `errors`. The blocks run one after another on
// the same fibers; each starts from fresh shared memory, shadow state and barriers.
template <typename F>
void Launch(Dim3 grid, Dim3 block, size_t smem_bytes, CopyTiming timing,
            std::vector<std::string>& errors, F&& kernel) {
  const int threads = static_cast<int>(block.x);
  const unsigned blocks = grid.x * grid.y;
  if (threads <= 0 || blocks == 0) return;
  Block b;
  b.grid_dim = grid;
  b.block_dim = block;
  b.timing = timing;
  b.errors = &errors;
  auto reset = [&](unsigned index) {  // block `index`'s state; x varies fastest
    b.block_idx = Dim3{index % grid.x, index / grid.x, 0};
    b.smem.assign(smem_bytes, 0xff);
    b.shadow.assign((smem_bytes + 3) / 4, Shadow{});
    b.block_barrier = std::make_unique<fiber::Barrier>(threads);
    b.warp_barriers.clear();
    for (int w = 0; w < (threads + 31) / 32; ++w) {
      b.warp_barriers.emplace_back(std::min(32, threads - 32 * w));
    }
    b.slots.assign(threads, Block::Slot{});
  };
  reset(0);
  fiber::Barrier between_blocks(threads);
  std::vector<Thread*> running(static_cast<size_t>(threads), nullptr);
  std::vector<Thread*>* const outer = launch_threads;
  launch_threads = &running;
  fiber::RunAll(threads, [&](int i) {
    for (unsigned index = 0; index < blocks; ++index) {
      Thread t;
      t.block = &b;
      t.thread_idx = Dim3{static_cast<unsigned>(i), 0, 0};
      t.tid = i;
      running[static_cast<size_t>(i)] = &t;
      kernel();
      if (!t.groups.empty() || !t.open_group.empty()) {
        std::lock_guard<std::mutex> lock(b.mu);
        b.Error(Where(t) + ": exits with cp.async copies never waited for");
      }
      // A thread that returned takes no part in the block's later barriers, as on the GPU.
      b.block_barrier->ArriveAndDrop();
      b.warp_barriers[static_cast<size_t>(i) / 32].ArriveAndDrop();
      between_blocks.ArriveAndWait();  // every thread is done with this block
      running[static_cast<size_t>(i)] = nullptr;
      if (i == 0 && index + 1 < blocks) reset(index + 1);
      between_blocks.ArriveAndWait();  // the next block's state is ready
    }
  });
  launch_threads = outer;
}

// ---- The launchers' side ------------------------------------------------------------
// attention.cu and its launchers run unchanged over the emulation through the launch
// macros at the end of this file. How cp.async copies land and where problems go is set
// per host thread by a LaunchScope. Without one, copies land at issue and any problem
// aborts with the list: a caller that asked for nothing (the emulated backend) must not
// go on with a result the emulation found wrong.
struct LaunchOptions {
  CopyTiming timing = CopyTiming::kAtIssue;
  std::vector<std::string>* errors = nullptr;
};
inline thread_local LaunchOptions launch_options;

class LaunchScope {
 public:
  LaunchScope(CopyTiming timing, std::vector<std::string>* errors) : saved_(launch_options) {
    launch_options = LaunchOptions{timing, errors};
  }
  ~LaunchScope() { launch_options = saved_; }
  LaunchScope(const LaunchScope&) = delete;
  LaunchScope& operator=(const LaunchScope&) = delete;

 private:
  LaunchOptions saved_;
};

// Dynamic shared memory per block: 48 KB unless the kernel was opted into more with
// cudaFuncSetAttribute, and at most 227 KB on sm_90 even then. A launch above the limit
// fails on the GPU; here it is reported and not run.
inline constexpr size_t kDefaultSmemBytes = 48 * 1024;
inline constexpr size_t kMaxSmemBytes = 227 * 1024;
inline std::mutex& OptInMutex() {
  static std::mutex mu;
  return mu;
}
inline std::map<const void*, size_t>& OptIns() {  // kernel -> bytes allowed; guarded by OptInMutex
  static std::map<const void*, size_t> allowed;
  return allowed;
}

inline void ReportOrAbort(std::vector<std::string>& errors, std::vector<std::string>& local) {
  if (&errors != &local || local.empty()) return;
  std::fprintf(stderr, "emulated attention launch found %zu problem(s):\n", local.size());
  for (const std::string& e : local) std::fprintf(stderr, "  %s\n", e.c_str());
  std::abort();
}

inline void AllowSmem(const void* kernel, size_t bytes) {
  std::vector<std::string> local;
  std::vector<std::string>& errors = launch_options.errors ? *launch_options.errors : local;
  if (bytes > kMaxSmemBytes) {
    errors.push_back("cudaFuncSetAttribute: " + std::to_string(bytes) +
                     " bytes of dynamic shared memory; sm_90 allows at most " +
                     std::to_string(kMaxSmemBytes));
  } else {
    std::lock_guard<std::mutex> lock(OptInMutex());
    OptIns()[kernel] = bytes;
  }
  ReportOrAbort(errors, local);
}

// `body` calls the kernel with its arguments; `kernel` identifies it for the opt-in.
template <typename F>
void LaunchFromHost(const void* kernel, dim3 grid, dim3 block, size_t smem_bytes, F&& body) {
  std::vector<std::string> local;
  std::vector<std::string>& errors = launch_options.errors ? *launch_options.errors : local;
  size_t allowed = kDefaultSmemBytes;
  {
    std::lock_guard<std::mutex> lock(OptInMutex());
    if (auto it = OptIns().find(kernel); it != OptIns().end()) allowed = std::max(allowed, it->second);
  }
  const std::string geometry = "grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) +
                               "," + std::to_string(grid.z) + ") block " +
                               std::to_string(block.x) + "x" + std::to_string(block.y) + "x" +
                               std::to_string(block.z);
  if (smem_bytes > allowed) {
    errors.push_back("launch with " + std::to_string(smem_bytes) +
                     " bytes of dynamic shared memory; the kernel is allowed " +
                     std::to_string(allowed) + " (" + geometry + ")");
  } else if (block.y != 1 || block.z != 1 || block.x == 0 || block.x > 1024 || grid.x == 0 ||
             grid.y == 0 || grid.y > 65535 || grid.z != 1) {
    // The emulation runs 1-D blocks of a 2-D grid, all the launchers make; zero sizes
    // and a grid.y over 65535 are launch errors on the GPU.
    errors.push_back("bad launch geometry: " + geometry);
  } else {
    Launch(Dim3{grid.x, grid.y, 1}, Dim3{block.x, 1, 1}, smem_bytes, launch_options.timing, errors,
           body);
  }
  ReportOrAbort(errors, local);
}

}  // namespace emu

// The primitives attention_internal.cuh declares for the GPU, over the emulation.
inline uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(static_cast<const unsigned char*>(p) - emu::Smem());
}
inline void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  emu::Mma(c, a, b0, b1);
}
inline void LdMatrixX4(uint32_t (&r)[4], uint32_t addr) { emu::LdMatrix(r, addr, false); }
inline void LdMatrixX4Trans(uint32_t (&r)[4], uint32_t addr) { emu::LdMatrix(r, addr, true); }
inline void CpAsync16(uint32_t dst, const void* src, bool valid) {
  emu::CpAsync(dst, src, 16, valid);
}
inline void CpAsync4(uint32_t dst, const void* src, bool valid) {
  emu::CpAsync(dst, src, 4, valid);
}
inline void CpAsyncCommit() { emu::CpAsyncCommit(); }
template <int N>
inline void CpAsyncWait() {
  emu::CpAsyncWait(N);
}
inline float LoadSharedF32(const float* p) { return emu::LoadSharedF32(p); }
inline void StoreShared32(void* p, uint32_t v) { emu::StoreShared32(p, v); }
inline void AtomicAdd2(float* dst, float a, float b) {
  emu::AtomicAddF32(dst, a);
  emu::AtomicAddF32(dst + 1, b);
}

}  // namespace colossus::kernels::cuda::attn

// The launchers' host operations (attention_internal.cuh) over the emulation: the
// launch runs on host fibers now, the stream is ignored (everything is synchronous).
#define COLOSSUS_ATTN_LAUNCH(kernel, grid, block, smem_bytes, stream, ...)                     \
  ::colossus::kernels::cuda::attn::emu::LaunchFromHost(reinterpret_cast<const void*>(kernel),  \
                                                       dim3(grid), dim3(block), (smem_bytes), \
                                                       [&] { kernel(__VA_ARGS__); })
#define COLOSSUS_ATTN_ALLOW_SMEM(kernel, smem_bytes) \
  ::colossus::kernels::cuda::attn::emu::AllowSmem(reinterpret_cast<const void*>(kernel), (smem_bytes))
#define COLOSSUS_ATTN_ZERO_ASYNC(ptr, bytes, stream) std::memset((ptr), 0, (bytes))
