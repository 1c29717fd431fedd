// The NCCL backend: collectives between GPUs, one rank per device.
//
// Buffers are device memory on options.device. Every operation is enqueued on a CUDA
// stream (OpOptions::stream, else the communicator's own stream) and returns at once;
// its Work completes when the device has finished it. Wait() polls a CUDA event and
// ncclCommGetAsyncError; when the operation's timeout passes (the watchdog), the
// communicator is aborted and the Work fails with DeadlineExceeded naming the
// operation, its sequence number, the group, and the ranks that did not arrive (the
// same Store arrival board the Gloo backend uses). The watchdog acts when someone
// waits: a caller that never waits on a stuck operation is never told about it.
//
// Abort() calls ncclCommAbort; it is safe from another thread (NCCL calls on one
// communicator are serialised by a mutex and none of them blocks while holding it,
// because the communicator is created non-blocking). NCCL requires every rank of a
// broken group to abort its communicator before the group is re-created: do so on
// every rank, then create the new group under a fresh PrefixStore prefix.
//
// Multi-rank groups need one GPU per rank: NCCL 2.28 refuses two ranks of a group on
// one device ("Duplicate GPU detected").
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "colossus/comm/communicator.h"
#include "colossus/comm/store.h"

namespace colossus::comm {

struct NcclOptions {
  CommOptions comm;
  // CUDA device of this rank (made current on the calling thread by Create and on
  // every later call that needs it).
  int device = 0;
};

// Creates rank `rank` of a group of `size` ranks. Collective: all `size` ranks call it
// with stores scoped to the same prefix. Rank 0 creates the ncclUniqueId and sets it
// under the store key "nccl/unique_id"; the others wait for it. Initialisation is
// non-blocking and polled until options.comm.init_timeout, then aborted.
//
// Errors: Unavailable when there is no usable GPU or driver (the message carries the
// CUDA error); InvalidArgument for a bad rank, size or device index; DeadlineExceeded
// (naming the rank and the store key, or NCCL's init) past init_timeout; Internal for
// other NCCL failures.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    std::shared_ptr<Store> store, int rank, int size, const NcclOptions& options = {});

// Number of CUDA devices, or the CUDA error (as Unavailable) when there are none usable.
absl::StatusOr<int> NcclDeviceCount();

}  // namespace colossus::comm
