// ArrivalBoard: the watchdog's shared memory. Each rank publishes which collective it
// last entered ("arrived/<rank>" = "<seq> <op>") and the first failure the group saw
// ("failure" = "<rank> <seq> <code> <message>"); after a failure every rank reads the
// board to say who did not arrive and what went wrong first.
//
// Publishing is asynchronous, coalesced and rate-limited: Arrive() only records the
// latest (seq, op) and wakes a background thread, which writes it to the Store at most
// once per kPublishInterval. A collective therefore never waits for the Store, and the
// Store sees a few writes per second per rank however fast collectives run (one write
// per collective cost our 4 MiB all-reduce ~15% on a loaded 2-core machine: the extra
// wake-ups land on the ring's critical path). A marker lags its rank by at most the
// interval plus one Store round trip, far below any collective timeout, which is all
// the diagnosis needs.
//
// Backend-neutral: the Gloo and NCCL backends both use it.
//
// Thread safety: all methods may be called from any thread. The destructor stops the
// publisher thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "colossus/comm/store.h"

namespace colossus::comm::internal {

class ArrivalBoard {
 public:
  static constexpr absl::Duration kPublishInterval = absl::Milliseconds(50);
  // Bound on each failure-path Store exchange (see bounded_call.h).
  static constexpr absl::Duration kDiagnosisTimeout = absl::Seconds(2);

  // store: this group's scope (keys go directly under it).
  ArrivalBoard(std::shared_ptr<Store> store, int rank, int size);
  ~ArrivalBoard();
  ArrivalBoard(const ArrivalBoard&) = delete;
  ArrivalBoard& operator=(const ArrivalBoard&) = delete;

  // Records that this rank entered collective `seq` (`op` must outlive the board: a
  // string literal). Never blocks on the Store.
  void Arrive(uint64_t seq, const char* op);

  // Text naming the ranks that had not arrived at `seq` in `op`, e.g.
  //   "ranks that did not arrive at seq 7: 2 (last at seq 6 all_gather), 3 (no
  //   collective yet)"  or  "every rank arrived at seq 7".
  // Reads each rank's marker with Get (no waiting); a Store failure, or no answer
  // within kDiagnosisTimeout, is reported in the text instead of hiding the original
  // error or blocking its report.
  std::string DescribeMissing(uint64_t seq, const char* op);

  // The group's first failure, recorded once (CompareSet: the first writer wins).
  struct Failure {
    int rank = -1;
    uint64_t seq = 0;
    absl::StatusCode code = absl::StatusCode::kUnknown;
    std::string message;
  };
  // Records `failure` unless one is already there; returns the one on the board
  // (nullopt if the Store cannot be reached or does not answer within
  // kDiagnosisTimeout).
  std::optional<Failure> RecordFailure(const Failure& failure);

 private:
  void PublishLoop();

  std::shared_ptr<Store> store_;
  const int rank_;
  const int size_;

  std::mutex mu_;
  std::condition_variable wake_;
  uint64_t latest_seq_ = 0;       // guarded by mu_
  const char* latest_op_ = "";    // guarded by mu_
  uint64_t published_seq_ = 0;    // guarded by mu_
  bool stop_ = false;             // guarded by mu_
  std::thread publisher_;
};

}  // namespace colossus::comm::internal
