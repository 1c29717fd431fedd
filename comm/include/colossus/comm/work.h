// Work: the handle a communicator operation returns.
//
// CPU backends (Gloo) run each operation to completion before returning, so their Work
// is already complete and Wait() only hands back the result. GPU backends (NCCL)
// return once the operation is enqueued on its stream; Wait() then blocks the host
// until the device has finished it, an asynchronous error shows up, or the timeout
// passes. Stream-ordered callers need not wait at all: later work on the same stream
// runs after the collective.
//
// A Work must be looked at: it is [[nodiscard]], and the status of a failed operation
// is only reported through it (the communicator is broken afterwards either way, see
// communicator.h).
//
// Thread safety: a Work may be waited on from any thread; copies share one state.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace colossus::comm {

// What a backend implements behind a Work.
class WorkState {
 public:
  virtual ~WorkState() = default;
  // Blocks until the operation completed or `timeout` passed. Returns the operation's
  // status; DeadlineExceeded if it is still running at the timeout (the operation
  // itself is not cancelled: the communicator's watchdog decides its fate).
  virtual absl::Status Wait(absl::Duration timeout) = 0;
  // Non-blocking: whether the operation has finished (successfully or not).
  virtual bool Done() = 0;
};

class [[nodiscard]] Work {
 public:
  // A completed operation with the given result.
  static Work Completed(absl::Status status);

  explicit Work(std::shared_ptr<WorkState> state);

  // See WorkState::Wait. With the default timeout, waits as long as the operation's own
  // timeout allows (the backend's watchdog bounds it).
  absl::Status Wait(absl::Duration timeout = absl::InfiniteDuration()) const;
  bool Done() const;

 private:
  std::shared_ptr<WorkState> state_;
};

}  // namespace colossus::comm
