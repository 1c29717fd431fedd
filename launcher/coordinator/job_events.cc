#include "colossus/launcher/job_events.h"

#include <algorithm>
#include <utility>

namespace colossus::launcher {

JobEvents::JobEvents(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

void JobEvents::Append(v1::JobEvent event) {
  absl::MutexLock lock(&mu_);
  ring_.emplace_back(next_seq_++, std::move(event));
  if (ring_.size() > capacity_) ring_.pop_front();
}

void JobEvents::Flush() {
  absl::MutexLock flush_lock(&flush_mu_);
  while (true) {
    std::vector<std::pair<uint64_t, v1::JobEvent>> batch;
    std::vector<Subscriber> subscribers;
    {
      absl::MutexLock lock(&mu_);
      // The ring is ordered by sequence: find the first event not yet delivered.
      auto it = std::upper_bound(
          ring_.begin(), ring_.end(), delivered_seq_,
          [](uint64_t seq, const std::pair<uint64_t, v1::JobEvent>& e) { return seq < e.first; });
      if (it == ring_.end()) return;
      batch.assign(it, ring_.end());
      subscribers.reserve(subscribers_.size());
      for (const auto& [id, s] : subscribers_) subscribers.push_back(s);
    }
    // Delivered outside mu_ so that subscribers may Subscribe/Unsubscribe and Append
    // may proceed; flush_mu_ keeps the order.
    for (const auto& [seq, event] : batch) {
      for (const Subscriber& s : subscribers) {
        if (seq >= s.first_seq) s.sink->OnEvent(event);
      }
      delivered_seq_ = seq;
    }
  }
}

uint64_t JobEvents::Subscribe(std::shared_ptr<EventSink> sink) {
  absl::Status closed;
  uint64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      closed = closed_status_;
    } else {
      id = next_subscriber_++;
      subscribers_.emplace(id, Subscriber{sink, next_seq_});
      return id;
    }
  }
  sink->OnClosed(closed);
  return id;
}

void JobEvents::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(id);
}

void JobEvents::CloseAll(const absl::Status& status) {
  std::vector<std::shared_ptr<EventSink>> sinks;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    closed_status_ = status;
    for (auto& [id, s] : subscribers_) sinks.push_back(std::move(s.sink));
    subscribers_.clear();
  }
  for (auto& sink : sinks) sink->OnClosed(status);
}

std::vector<v1::JobEvent> JobEvents::Recent(size_t max) const {
  absl::MutexLock lock(&mu_);
  size_t n = std::min(max, ring_.size());
  std::vector<v1::JobEvent> out;
  out.reserve(n);
  for (size_t i = ring_.size() - n; i < ring_.size(); ++i) out.push_back(ring_[i].second);
  return out;
}

uint64_t JobEvents::appended() const {
  absl::MutexLock lock(&mu_);
  return next_seq_ - 1;
}

size_t JobEvents::subscribers() const {
  absl::MutexLock lock(&mu_);
  return subscribers_.size();
}

}  // namespace colossus::launcher
