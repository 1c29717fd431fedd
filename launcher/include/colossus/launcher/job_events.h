// JobEvents: the job's event log, a bounded ring plus live subscribers.
//
// The job state appends events (node joined, generation formed, node dead, rank stuck,
// restart, commit, job ended) while it holds its own mutex; Append only copies the event
// into the ring under this object's mutex and gives it the next sequence number, so the
// order of the log is the order in which the state changed. Flush(), called by the state
// after it has released its mutex, hands every event not yet delivered to each
// subscriber in sequence order; one Flush runs at a time, so two threads flushing at once
// cannot deliver out of order.
//
// Subscribers see the events appended after they subscribed ("from now on"); the ring
// keeps the most recent `capacity` events for Recent() (tests, diagnostics).
//
// Thread safety: every method is thread-safe. Subscriber callbacks run on the flushing
// thread, never under JobState's mutex nor under this object's ring mutex (only under
// the flush mutex: a subscriber must not call Flush, and must not block).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "colossus/coordinator/v1/coordinator.pb.h"

namespace colossus::launcher {

namespace v1 = ::colossus::coordinator::v1;

class EventSink {
 public:
  virtual ~EventSink() = default;
  // One event, in log order. Must not block (queue and return).
  virtual void OnEvent(const v1::JobEvent& event) = 0;
  // The log is closing (coordinator shutting down): no more events will come.
  virtual void OnClosed(const absl::Status& status) {}
};

class JobEvents {
 public:
  explicit JobEvents(size_t capacity = 4096);

  JobEvents(const JobEvents&) = delete;
  JobEvents& operator=(const JobEvents&) = delete;

  // Records an event (cheap; may be called under any lock of the caller).
  void Append(v1::JobEvent event);

  // Delivers the events appended so far to the subscribers. Call without holding the
  // caller's locks.
  void Flush();

  // Adds a subscriber that receives events appended from now on; returns its id.
  uint64_t Subscribe(std::shared_ptr<EventSink> sink);
  // Removes a subscriber; it receives nothing after this returns, unless a Flush is
  // delivering to it concurrently (then at most that batch).
  void Unsubscribe(uint64_t id);

  // Calls OnClosed on every subscriber and drops them all; later Subscribe calls get a
  // subscriber closed at once.
  void CloseAll(const absl::Status& status);

  // Up to `max` most recent events, oldest first.
  std::vector<v1::JobEvent> Recent(size_t max) const;
  // Events appended since construction.
  uint64_t appended() const;
  // Current subscribers.
  size_t subscribers() const;

 private:
  struct Subscriber {
    std::shared_ptr<EventSink> sink;
    uint64_t first_seq;  // first event it may see
  };

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<std::pair<uint64_t, v1::JobEvent>> ring_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_subscriber_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status closed_status_ ABSL_GUARDED_BY(mu_);

  absl::Mutex flush_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  uint64_t delivered_seq_ ABSL_GUARDED_BY(flush_mu_) = 0;  // last sequence delivered
};

}  // namespace colossus::launcher
