// Cooperative threads (fibers) for the CUDA emulations (emulate.h, attention_emulation.h):
// the threads of an emulated block run as fibers on the calling host thread and switch
// only where a CUDA thread would wait for others (__syncthreads, a warp collective).
//
// Why not one host thread per CUDA thread: every barrier was then a futex handoff among
// hundreds of OS threads on a couple of cores, and a training step of a small GPT took
// seconds in kernel barriers alone. A fiber switch is a user-space context switch.
//
// Semantics kept from the threaded version: a barrier completes when every live fiber
// of the party has arrived; a fiber that returned no longer counts (ArriveAndDrop);
// fibers interleave only at barriers, which is the most a race detector can rely on
// anyway (the attention emulation's race checks use barrier epochs, not timing). A
// deadlock (threads waiting at a barrier the others never reach) aborts with a message
// instead of hanging.
//
// Test-only, like the emulations. One scheduler per host thread: test threads may run
// launches concurrently. Under AddressSanitizer the switches are announced to it
// (__sanitizer_*_switch_fiber), so it tracks the fibers' stacks.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define COLOSSUS_FIBER_ASAN 1
#endif

namespace colossus::kernels::cuda::fiber {

// Kernels compiled for the host keep their "registers" on the stack, and the emulations
// build error strings there: 256 KiB each, reserved lazily (MAP_NORESERVE).
inline constexpr size_t kStackBytes = 256 * 1024;

struct Fiber {
  ucontext_t context;
  bool done = false;
  void* asan_fake_stack = nullptr;
};

struct Scheduler {
  ucontext_t main;
  std::vector<Fiber> fibers;
  int current = -1;
  const std::function<void(int)>* body = nullptr;
  char* stacks = nullptr;
  const void* main_stack_bottom = nullptr;  // for AddressSanitizer
  size_t main_stack_size = 0;
  // Arrivals at barriers and fibers finished: a round of the scheduler that adds none
  // means every live fiber waits for one that never comes (a deadlock).
  uint64_t progress = 0;
};

inline thread_local Scheduler* scheduler = nullptr;

// The running fiber's index in [0, n) of RunAll. REQUIRES: called from a fiber.
inline int CurrentIndex() { return scheduler->current; }

// Back to the scheduler; returns when the scheduler resumes this fiber.
inline void Yield() {
  Scheduler& s = *scheduler;
  Fiber& f = s.fibers[s.current];
#if defined(COLOSSUS_FIBER_ASAN)
  __sanitizer_start_switch_fiber(&f.asan_fake_stack, s.main_stack_bottom, s.main_stack_size);
#endif
  swapcontext(&f.context, &s.main);
#if defined(COLOSSUS_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(f.asan_fake_stack, &s.main_stack_bottom, &s.main_stack_size);
#endif
}

inline void Trampoline() {
  Scheduler& s = *scheduler;
#if defined(COLOSSUS_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &s.main_stack_bottom, &s.main_stack_size);
#endif
  const int index = s.current;
  (*s.body)(index);
  s.fibers[index].done = true;
  ++s.progress;
#if defined(COLOSSUS_FIBER_ASAN)
  // This fiber's stack is finished with: null frees its fake stack.
  __sanitizer_start_switch_fiber(nullptr, s.main_stack_bottom, s.main_stack_size);
#endif
  // Returning resumes uc_link, the scheduler.
}

// A barrier of `expected` fibers of one RunAll (std::barrier's arrive_and_wait and
// arrive_and_drop, for fibers).
class Barrier {
 public:
  explicit Barrier(int expected) : expected_(expected) {}

  void ArriveAndWait() {
    ++scheduler->progress;
    if (++arrived_ == expected_) {
      Complete();
      return;
    }
    const uint64_t phase = phase_;
    while (phase_ == phase) Yield();
  }
  // Leaves the party for good (a thread that returned): counts as an arrival now.
  void ArriveAndDrop() {
    ++scheduler->progress;
    --expected_;
    if (expected_ > 0 && arrived_ == expected_) Complete();
  }

 private:
  void Complete() {
    arrived_ = 0;
    ++phase_;
  }
  int expected_;
  int arrived_ = 0;
  uint64_t phase_ = 0;
};

// Runs body(0) .. body(n - 1) as n fibers on this host thread, round robin, until all
// have returned. REQUIRES: not called from a fiber; body does not throw.
inline void RunAll(int n, const std::function<void(int)>& body) {
  if (n <= 0) return;
  if (scheduler != nullptr) {
    std::fprintf(stderr, "fiber::RunAll called from a fiber\n");
    std::abort();
  }
  Scheduler s;
  s.body = &body;
  s.fibers.resize(static_cast<size_t>(n));
  const size_t bytes = kStackBytes * static_cast<size_t>(n);
  void* stacks = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (stacks == MAP_FAILED) {
    std::fprintf(stderr, "fiber::RunAll: cannot map %zu bytes of fiber stacks\n", bytes);
    std::abort();
  }
  s.stacks = static_cast<char*>(stacks);
  for (int i = 0; i < n; ++i) {
    Fiber& f = s.fibers[static_cast<size_t>(i)];
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = s.stacks + kStackBytes * static_cast<size_t>(i);
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &s.main;
    makecontext(&f.context, Trampoline, 0);
  }
  scheduler = &s;
  // Every other RunAll on this host thread resumes the fibers in reverse order, so that
  // a read of another thread's write with no barrier between sees it missing in one of
  // the two orders (a kernel's later launches run the other).
  static thread_local unsigned runs = 0;
  const bool reverse = (runs++ % 2) == 1;
  int live = n;
  while (live > 0) {
    const uint64_t progress = s.progress;
    for (int k = 0; k < n; ++k) {
      const int i = reverse ? n - 1 - k : k;
      Fiber& f = s.fibers[static_cast<size_t>(i)];
      if (f.done) continue;
      s.current = i;
#if defined(COLOSSUS_FIBER_ASAN)
      void* main_fake = nullptr;
      __sanitizer_start_switch_fiber(&main_fake, f.context.uc_stack.ss_sp, kStackBytes);
#endif
      swapcontext(&s.main, &f.context);
#if defined(COLOSSUS_FIBER_ASAN)
      __sanitizer_finish_switch_fiber(main_fake, nullptr, nullptr);
#endif
      if (f.done) --live;
    }
    if (live > 0 && s.progress == progress) {
      // On the GPU this is a hang (or undefined behaviour); here it ends the test.
      std::fprintf(stderr,
                   "emulated block deadlocked: %d of %d threads wait at a barrier or warp "
                   "collective that the others never reach\n",
                   live, n);
      std::abort();
    }
  }
  scheduler = nullptr;
  munmap(stacks, bytes);
}

}  // namespace colossus::kernels::cuda::fiber
