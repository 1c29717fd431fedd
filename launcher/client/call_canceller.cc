#include "call_canceller.h"

#include <condition_variable>
#include <thread>

#include "absl/time/clock.h"
#include "grpcpp/client_context.h"

namespace colossus::launcher::client_internal {

CallCanceller& CallCanceller::Get() {
  static CallCanceller* const canceller = new CallCanceller();
  return *canceller;
}

CallCanceller::CallCanceller() { std::thread([this] { Loop(); }).detach(); }

uint64_t CallCanceller::Arm(absl::Time when, grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t handle = next_++;
  const bool earliest = armed_.empty() || when < armed_.begin()->first.first;
  armed_.emplace(std::make_pair(when, handle), context);
  when_.emplace(handle, when);
  if (earliest) cv_.notify_one();
  return handle;
}

bool CallCanceller::Disarm(uint64_t handle) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = when_.find(handle);
  if (it == when_.end()) return true;  // fired (and erased) by the loop
  armed_.erase(std::make_pair(it->second, handle));
  when_.erase(it);
  return false;
}

void CallCanceller::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (armed_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const absl::Time next = armed_.begin()->first.first;
    const absl::Time now = absl::Now();
    if (next > now) {
      cv_.wait_for(lock, absl::ToChronoNanoseconds(next - now));
      continue;
    }
    // TryCancel only flags the call and returns; holding the lock keeps Disarm (and so
    // the context's destruction) from racing it.
    auto first = armed_.begin();
    first->second->TryCancel();
    when_.erase(first->first.second);
    armed_.erase(first);
  }
}

}  // namespace colossus::launcher::client_internal
