// Communicator: collectives and point-to-point transfers among the ranks of one group.
//
// Backends: Gloo on the CPU (gloo.h; buffers in host memory, every call completes
// before it returns) and NCCL on GPUs (buffers in device memory, calls enqueue on a
// stream and return). The semantics below are NCCL's, so that code written against
// one backend runs on the other.
//
// Counts are numbers of elements (size_t), never bytes. Buffers are raw pointers; the
// caller owns them and keeps them alive until the returned Work has completed.
//
// Ordering: every rank of the group must issue the same collectives in the same order
// with matching counts, dtypes, ops and roots (as with NCCL and MPI). Calls on one
// communicator are serialised; use separate communicators (Split) for concurrency.
//
// Sequence numbers and the watchdog: each collective (AllReduce, ReduceScatter,
// AllGather, Broadcast, AllToAll, Barrier, Split) takes the next sequence number of this
// communicator, 1, 2, 3, ... Each rank publishes "arrived at collective s" to the
// Store. A collective that does not complete within its timeout fails on this rank
// with DeadlineExceeded, and the message names the operation, its sequence number, the
// group, and the ranks that did not arrive (read from the Store). The failing rank
// tears its connections down, so the rest of the group fails promptly too instead of
// waiting for their own timeouts. Point-to-point calls have timeouts but no sequence
// numbers (only two ranks take part).
//
// Errors (absl::Status through Work, naming group, rank, op and sequence number):
//   InvalidArgument    a bad argument on this rank (null buffer, root out of range);
//                      nothing was sent and the communicator stays usable.
//   DeadlineExceeded   the watchdog timeout passed.
//   Unavailable        a peer went away (process died, connection reset).
//   Aborted            Abort() was called.
//   Internal           a backend failure that fits none of the above.
// After any error other than InvalidArgument the communicator is broken: every later
// call fails at once with the first error's code and message. A broken communicator
// cannot be repaired; Abort() it and create a new one, typically through a fresh Store
// prefix (see prefix_store.h), from the surviving ranks.
//
// Thread safety: rank(), size(), name(), Health() and Abort() may be called from any
// thread at any time. Operations may be called from any thread but are serialised.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colossus/comm/types.h"
#include "colossus/comm/work.h"

namespace colossus::comm {

// Split color for a rank that joins no sub-group.
inline constexpr int kSplitNoColor = -1;

enum class Backend : uint8_t { kGloo = 0, kNccl = 1 };

constexpr const char* BackendName(Backend b) { return b == Backend::kGloo ? "gloo" : "nccl"; }

// Options that every backend understands when a communicator is created.
struct CommOptions {
  // Name of the group in messages ("world", "dp", "tp", ...).
  std::string name = "world";
  // Default timeout of each operation (the watchdog's limit).
  absl::Duration timeout = absl::Minutes(5);
  // Limit for creating the communicator (rendezvous through the Store, connecting).
  absl::Duration init_timeout = absl::Minutes(5);
};

// Per-operation options.
struct OpOptions {
  // This operation's timeout; absl::ZeroDuration() takes CommOptions::timeout.
  absl::Duration timeout = absl::ZeroDuration();
  // GPU backends: the cudaStream_t to enqueue on (nullptr: the communicator's own
  // stream). Typed void* so that this header does not pull in CUDA. CPU: ignored.
  void* stream = nullptr;
};

class Communicator {
 public:
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& name() const { return name_; }
  virtual Backend backend() const = 0;

  // recv[i] = op over ranks of send[i], i < count. In place when send == recv.
  Work AllReduce(const void* send, void* recv, size_t count, DataType dtype, ReduceOp op,
                 const OpOptions& options = {});

  // send holds size() blocks of recv_count elements; rank r receives into recv the
  // reduction of block r over all ranks. In place when recv == send + rank() * recv_count
  // elements (NCCL's definition); any other overlap is undefined.
  Work ReduceScatter(const void* send, void* recv, size_t recv_count, DataType dtype,
                     ReduceOp op, const OpOptions& options = {});

  // recv holds size() blocks of send_count elements; block r receives rank r's send. In
  // place when send == recv + rank() * send_count elements.
  Work AllGather(const void* send, void* recv, size_t send_count, DataType dtype,
                 const OpOptions& options = {});

  // recv on every rank receives root's send (count elements). send is read on root only
  // (nullptr elsewhere); on root, send == recv (or send == nullptr) is in place.
  Work Broadcast(const void* send, void* recv, size_t count, DataType dtype, int root,
                 const OpOptions& options = {});

  // send holds size() blocks of count elements; block j goes to rank j, and recv's
  // block j receives rank j's block rank(). Out of place only: send and recv must not
  // overlap (InvalidArgument when they are the same pointer).
  Work AllToAll(const void* send, void* recv, size_t count, DataType dtype,
                const OpOptions& options = {});

  // Completes on each rank once every rank has entered it.
  Work Barrier(const OpOptions& options = {});

  // Point to point: the n-th Send to peer p matches p's n-th Recv from this rank; the
  // counts and dtypes must agree. On the CPU, Send returns once the data has left.
  Work Send(const void* buf, size_t count, DataType dtype, int peer,
            const OpOptions& options = {});
  Work Recv(void* buf, size_t count, DataType dtype, int peer, const OpOptions& options = {});

  // Collective over this group (it takes a sequence number): ranks passing the same
  // color >= 0 form a new communicator, ranked by (key, rank in this group). A rank
  // passing kSplitNoColor takes part in the exchange and gets nullptr. The new group
  // is named `name` (default: "<this name>.<color>") and inherits this group's options.
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key,
                                                      std::string name = "");

  // Tears the communicator down without waiting for peers: later calls fail with
  // Aborted, peers see their connections close. Safe to call from another thread while
  // an operation is running (that operation then fails, at the latest when its timeout
  // passes). Idempotent. Every rank of a broken group should call it before re-creating
  // the group (NCCL requires it).
  virtual void Abort() = 0;

  // OK while the communicator is usable; otherwise the error that broke it.
  virtual absl::Status Health() const = 0;

  // Sequence number of the last collective started on this rank (0: none yet).
  uint64_t last_seq() const;

 protected:
  // What the public wrappers hand a backend after validating the arguments.
  struct Call {
    const char* op;                // "all_reduce", ...
    uint64_t seq;                  // 0 for point-to-point
    absl::Duration timeout;        // resolved (never zero)
    void* stream;
  };

  Communicator(int rank, int size, std::string name, absl::Duration default_timeout);

  virtual Work DoAllReduce(const Call& call, const void* send, void* recv, size_t count,
                           DataType dtype, ReduceOp op) = 0;
  virtual Work DoReduceScatter(const Call& call, const void* send, void* recv,
                               size_t recv_count, DataType dtype, ReduceOp op) = 0;
  virtual Work DoAllGather(const Call& call, const void* send, void* recv, size_t send_count,
                           DataType dtype) = 0;
  virtual Work DoBroadcast(const Call& call, const void* send, void* recv, size_t count,
                           DataType dtype, int root) = 0;
  virtual Work DoAllToAll(const Call& call, const void* send, void* recv, size_t count,
                          DataType dtype) = 0;
  virtual Work DoBarrier(const Call& call) = 0;
  virtual Work DoSend(const Call& call, const void* buf, size_t count, DataType dtype,
                      int peer) = 0;
  virtual Work DoRecv(const Call& call, void* buf, size_t count, DataType dtype, int peer) = 0;
  virtual absl::StatusOr<std::unique_ptr<Communicator>> DoSplit(const Call& call, int color,
                                                                int key, std::string name) = 0;

  absl::Duration default_timeout() const { return default_timeout_; }

 private:
  // Validation failures are reported without a sequence number and leave the
  // communicator usable; anything else takes the next sequence number.
  absl::Status Validate(const char* op, size_t count, size_t blocks, DataType dtype) const;
  Call NextCollective(const char* op, const OpOptions& options);
  Call PointToPoint(const char* op, const OpOptions& options) const;

  const int rank_;
  const int size_;
  const std::string name_;
  const absl::Duration default_timeout_;
  // Serialises operations (held for the whole call, Split's rendezvous included).
  std::mutex op_mu_;
  std::atomic<uint64_t> seq_{0};
};

}  // namespace colossus::comm
