// CallWithin: runs a function on a detached thread and waits for it at most `timeout`.
//
// For the watchdog's reads and writes on the failure path: a Store that hangs (its
// server stopped but not dead) must not turn a reported failure into a new hang. The
// function keeps running after a timeout, so it must own what it uses (capture
// shared_ptrs and values, never `this`).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/time/time.h"

namespace colossus::comm::internal {

template <typename T, typename F>
std::optional<T> CallWithin(absl::Duration timeout, F fn) {
  struct State {
    std::mutex mu;
    std::condition_variable done;
    std::optional<T> result;
  };
  auto state = std::make_shared<State>();
  std::thread([state, fn = std::move(fn)]() mutable {
    T r = fn();
    std::lock_guard<std::mutex> lock(state->mu);
    state->result = std::move(r);
    state->done.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(state->mu);
  state->done.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                       [&] { return state->result.has_value(); });
  return state->result;
}

}  // namespace colossus::comm::internal
