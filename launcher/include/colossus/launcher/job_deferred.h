// Deferred: callbacks collected while a lock is held and run once it is released.
//
// The coordinator's state completes thousands of held calls at once (12,500 Joins when a
// generation forms, 100,000 StoreWaits when the NCCL id is set). Completing them under the
// state's mutex would hold every other caller for the whole fan-out and invite lock-order
// cycles with gRPC's own locks, so a method collects its completions here and they run
// after the lock is gone. Declare the Deferred before the lock guard: destruction runs in
// reverse order, so the guard unlocks first and ~Deferred() then runs the callbacks.
//
//   void JobState::Foo() {
//     Deferred deferred;               // runs last
//     absl::MutexLock lock(&mu_);
//     deferred.Add([done] { done(...); });
//   }                                  // unlock, then done(...)
//
// Thread safety: none; a Deferred belongs to one call on one thread.
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace colossus::launcher {

class Deferred {
 public:
  Deferred() = default;
  ~Deferred() { Run(); }

  Deferred(const Deferred&) = delete;
  Deferred& operator=(const Deferred&) = delete;

  void Add(std::function<void()> fn) { fns_.push_back(std::move(fn)); }
  bool empty() const { return fns_.empty(); }

  // Runs the collected callbacks in the order they were added (a callback may add more;
  // they run too). Must be called without the lock the callbacks were collected under.
  void Run() {
    for (size_t i = 0; i < fns_.size(); ++i) {
      std::function<void()> fn = std::move(fns_[i]);
      fn();
    }
    fns_.clear();
  }

 private:
  std::vector<std::function<void()>> fns_;
};

}  // namespace colossus::launcher
