// Pieces shared by the load generator's phases (not a public header).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "colossus/coordinator/v1/coordinator.grpc.pb.h"
#include "load_agents.h"

namespace colossus::bench {

namespace v1 = ::colossus::coordinator::v1;

// Monotonic nanoseconds (steady_clock): the phases' timestamps.
inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline double Seconds(int64_t ns) { return static_cast<double>(ns) * 1e-9; }

// The base of every pending operation: its address is the tag, Done runs on the queue's
// thread with gRPC's ok flag.
struct LoadAgents::Op {
  virtual ~Op() = default;
  virtual void Done(bool ok) = 0;
};

struct LoadAgents::StubSet {
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs;  // one per channel
};

// Counts completions and keeps the latest completion time; the main thread waits for
// a count.
class Latch {
 public:
  void Arrive() {
    const int64_t now = NowNs();
    int64_t prev = last_ns_.load(std::memory_order_relaxed);
    while (prev < now && !last_ns_.compare_exchange_weak(prev, now, std::memory_order_relaxed)) {
    }
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 >= target_.load()) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_all();
    }
  }
  // Waits until `n` arrivals (true) or until `timeout` passes (false).
  bool WaitFor(int64_t n, std::chrono::milliseconds timeout) {
    target_.store(n);
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_.load() >= n; });
  }
  int64_t count() const { return count_.load(); }
  int64_t last_ns() const { return last_ns_.load(); }

 private:
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> target_{INT64_MAX};
  std::atomic<int64_t> last_ns_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

// The node id of agent i: zero-padded so that the coordinator's node_id order is i's.
std::string NodeId(int agent);

}  // namespace colossus::bench
