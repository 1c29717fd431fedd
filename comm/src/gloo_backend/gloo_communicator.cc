#include "gloo_backend/gloo_communicator.h"

#include <signal.h>

#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "colossus/comm/prefix_store.h"
#include "cpu/reduce_kernels.h"
#include "gloo/allgather.h"
#include "gloo/alltoall.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/transport/tcp/device.h"
#include "gloo/transport/unbound_buffer.h"
#include "gloo/types.h"
#include "gloo_backend/exceptions.h"
#include "gloo_backend/reduce_scatter_ring.h"
#include "gloo_backend/store_adapter.h"
#include "split_plan.h"

namespace colossus::comm::internal {
namespace {

std::chrono::milliseconds ToMs(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return std::chrono::hours(24 * 365);
  return std::max(std::chrono::milliseconds(1), absl::ToChronoMilliseconds(d));
}

// Gloo's slot tags are 32 bits; sequence numbers wrap there, which only matters if
// four billion collectives were in flight at once.
uint32_t Tag(uint64_t seq) { return static_cast<uint32_t>(seq); }
// The tag of the barrier that ends a group's creation: no collective's (sequence numbers
// start at 1 and would need four billion calls to get here).
constexpr uint32_t kFormedTag = 0xFFFFFFFFu;

// Gloo's typed option setters only use sizeof(T): pick an unsigned type of the right
// width and let our reduce functions interpret the bits.
template <typename F>
void WithElementType(DataType dtype, F&& f) {
  switch (DataTypeSize(dtype)) {
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    case 8: return f(uint64_t{});
  }
  CHECK(false) << "unsupported element size for " << DataTypeName(dtype);
}

template <typename T>
T* Mutable(const void* p) {
  // Gloo takes non-const pointers for inputs it only reads.
  return static_cast<T*>(const_cast<void*>(p));
}

void IgnoreSigpipe() {
  static const bool once = [] {
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
    return true;
  }();
  (void)once;
}

std::string Elements(size_t count, DataType dtype) {
  return absl::StrCat(count, " x ", DataTypeName(dtype));
}

}  // namespace

absl::StatusOr<std::unique_ptr<GlooCommunicator>> GlooCommunicator::Create(
    std::shared_ptr<Store> store, int rank, int size, const GlooOptions& options,
    std::shared_ptr<gloo::transport::Device> device) {
  const std::string& name = options.comm.name;
  if (store == nullptr || size < 1 || rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(absl::StrCat("gloo: cannot create group '", name,
                                                   "' as rank ", rank, " of ", size,
                                                   store ? "" : " without a store"));
  }
  if (options.comm.timeout <= absl::ZeroDuration() ||
      options.comm.init_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo: group '", name, "': timeouts must be positive"));
  }
  IgnoreSigpipe();
  std::shared_ptr<gloo::rendezvous::Context> context;
  absl::Status s = RunCatching([&] {
    if (device == nullptr) {
      gloo::transport::tcp::attr attr;
      attr.hostname = options.hostname;
      device = gloo::transport::tcp::CreateDevice(attr);
    }
    context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    // Rendezvous waits for the slowest rank to start: that is init_timeout's job. Gloo
    // stores each rank's addresses under "<rank>"; ours go under "gloo/".
    context->setTimeout(ToMs(options.comm.init_timeout));
    GlooStoreAdapter adapter(std::make_shared<PrefixStore>(store, "gloo"),
                             options.comm.init_timeout);
    context->connectFullMesh(adapter, device);
    // No member returns before every member has connected. Without this a member that
    // finished its side first could return and exit (a test's rank, a job at its end)
    // while a slower peer was still completing a connection to it, and that peer's
    // creation failed with "Connection closed by peer" (seen in CI: a 4-rank TP test
    // whose fastest rank returned right after SplitTpDp).
    if (size > 1) {
      gloo::BarrierOptions formed(context);
      formed.setTag(kFormedTag);
      formed.setTimeout(ToMs(options.comm.init_timeout));
      gloo::barrier(formed);
    }
    context->setTimeout(ToMs(options.comm.timeout));
  });
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("gloo: creating group '", name, "' (rank ", rank,
                                               " of ", size, ") failed: ", s.message()));
  }
  return std::unique_ptr<GlooCommunicator>(
      new GlooCommunicator(std::move(store), rank, size, options, std::move(device),
                           std::move(context)));
}

GlooCommunicator::GlooCommunicator(std::shared_ptr<Store> store, int rank, int size,
                                   const GlooOptions& options,
                                   std::shared_ptr<gloo::transport::Device> device,
                                   std::shared_ptr<gloo::rendezvous::Context> context)
    : Communicator(rank, size, options.comm.name, options.comm.timeout),
      store_(std::move(store)),
      options_(options),
      device_(std::move(device)),
      context_(std::move(context)),
      board_(store_, rank, size),
      sent_to_(static_cast<size_t>(size), 0),
      received_from_(static_cast<size_t>(size), 0) {}

GlooCommunicator::~GlooCommunicator() = default;

absl::Status GlooCommunicator::Health() const {
  std::lock_guard<std::mutex> lock(health_mu_);
  return health_;
}

void GlooCommunicator::Break(const absl::Status& status) {
  bool close = false;
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    if (health_.ok()) health_ = status;
    close = !std::exchange(closed_, true);
  }
  // Closing resets every TCP connection: peers blocked on us fail at once instead of
  // at their own timeouts, which is how one rank's failure reaches the whole group.
  if (close) (void)RunCatching([&] { context_->closeConnections(); });
}

void GlooCommunicator::Abort() {
  Break(absl::AbortedError(
      absl::StrCat("gloo: communicator '", name(), "' rank ", rank(), " was aborted")));
}

absl::Status GlooCommunicator::Run(const Call& call, const std::string& detail,
                                   const std::function<void()>& body) {
  const std::string where = absl::StrCat("gloo ", call.op, " (group '", name(), "', seq ",
                                         call.seq, ", rank ", rank(), " of ", size(), ", ",
                                         detail, ")");
  if (absl::Status h = Health(); !h.ok()) {
    return absl::Status(h.code(), absl::StrCat(where, ": communicator unusable after an earlier "
                                               "failure; Abort() it and create a new one. ",
                                               "First error: ", h.message()));
  }
  if (call.seq != 0) board_.Arrive(call.seq, call.op);
  const absl::Time start = absl::Now();
  const absl::Status s = RunCatching(body);
  if (s.ok()) return s;

  const absl::Duration elapsed = absl::Now() - start;
  absl::StatusCode code = s.code();
  std::string root_cause;
  if (absl::Status h = Health(); h.code() == absl::StatusCode::kAborted) {
    code = absl::StatusCode::kAborted;  // Abort() from another thread caused this
  } else if (call.seq != 0) {
    // Record before closing connections: a peer that sees its connection drop then
    // finds the root cause on the board.
    std::optional<ArrivalBoard::Failure> first =
        board_.RecordFailure({rank(), call.seq, code, std::string(s.message())});
    if (first.has_value() && first->rank != rank()) {
      // A peer failed first (typically it timed out and closed its connections, which is
      // what we just saw): its code is the group's diagnosis.
      if (first->seq == call.seq) code = first->code;
      root_cause = absl::StrCat("; first failure in the group: rank ", first->rank, " at seq ",
                                first->seq, ": ", absl::StatusCodeToString(first->code), ": ",
                                first->message);
    }
  }
  Break(absl::Status(code, absl::StrCat(where, " failed: ", s.message())));
  std::string missing;
  if (call.seq != 0) missing = absl::StrCat("; ", board_.DescribeMissing(call.seq, call.op));
  return absl::Status(code, absl::StrCat(where, " failed after ", absl::FormatDuration(elapsed),
                                         " (timeout ", absl::FormatDuration(call.timeout),
                                         "): ", s.message(), missing, root_cause));
}

Work GlooCommunicator::DoAllReduce(const Call& call, const void* send, void* recv, size_t count,
                                   DataType dtype, ReduceOp op) {
  return Work::Completed(Run(
      call, absl::StrCat(Elements(count, dtype), " ", ReduceOpName(op)), [&] {
        if (count == 0) return;
        const size_t bytes = count * DataTypeSize(dtype);
        if (size() == 1) {
          if (send != recv) std::memmove(recv, send, bytes);
        } else {
          WithElementType(dtype, [&](auto t) {
            using T = decltype(t);
            gloo::AllreduceOptions o(context_);
            o.setOutput<T>(static_cast<T*>(recv), count);
            if (send != recv) o.setInput<T>(Mutable<T>(send), count);
            o.setReduceFunction(GetReduceFn(dtype, op));
            o.setTag(Tag(call.seq));
            o.setTimeout(ToMs(call.timeout));
            gloo::allreduce(o);
          });
        }
        if (op == ReduceOp::kAvg) DivideInPlace(recv, count, dtype, size());
      }));
}

Work GlooCommunicator::DoReduceScatter(const Call& call, const void* send, void* recv,
                                       size_t recv_count, DataType dtype, ReduceOp op) {
  return Work::Completed(Run(
      call, absl::StrCat(Elements(recv_count, dtype), " per rank ", ReduceOpName(op)), [&] {
        if (recv_count == 0) return;
        if (size() == 1) {
          if (send != recv) std::memmove(recv, send, recv_count * DataTypeSize(dtype));
        } else {
          RingReduceScatter(context_, send, recv, recv_count, DataTypeSize(dtype),
                            GetReduceFn(dtype, op), Tag(call.seq), ToMs(call.timeout));
        }
        if (op == ReduceOp::kAvg) DivideInPlace(recv, recv_count, dtype, size());
      }));
}

Work GlooCommunicator::DoAllToAll(const Call& call, const void* send, void* recv, size_t count,
                                  DataType dtype) {
  return Work::Completed(Run(call, absl::StrCat(Elements(count, dtype), " per rank pair"), [&] {
    if (count == 0) return;
    const size_t bytes = count * DataTypeSize(dtype) * static_cast<size_t>(size());
    if (size() == 1) {
      std::memmove(recv, send, bytes);
      return;
    }
    // An exchange moves bytes, whatever they hold: Gloo sees uint8_t blocks.
    gloo::AlltoallOptions o(context_);
    o.setInput<uint8_t>(Mutable<uint8_t>(send), bytes);
    o.setOutput<uint8_t>(static_cast<uint8_t*>(recv), bytes);
    o.setTag(Tag(call.seq));
    o.setTimeout(ToMs(call.timeout));
    gloo::alltoall(o);
  }));
}

Work GlooCommunicator::DoAllGather(const Call& call, const void* send, void* recv,
                                   size_t send_count, DataType dtype) {
  return Work::Completed(Run(call, absl::StrCat(Elements(send_count, dtype), " per rank"), [&] {
    if (send_count == 0) return;
    const size_t bytes = send_count * DataTypeSize(dtype);
    char* own_block = static_cast<char*>(recv) + static_cast<size_t>(rank()) * bytes;
    const bool in_place = send == own_block;
    if (size() == 1) {
      if (!in_place) std::memmove(recv, send, bytes);
      return;
    }
    WithElementType(dtype, [&](auto t) {
      using T = decltype(t);
      gloo::AllgatherOptions o(context_);
      // Without an input Gloo takes this rank's block of the output as it stands.
      if (!in_place) o.setInput<T>(Mutable<T>(send), send_count);
      o.setOutput<T>(static_cast<T*>(recv), send_count * static_cast<size_t>(size()));
      o.setTag(Tag(call.seq));
      o.setTimeout(ToMs(call.timeout));
      gloo::allgather(o);
    });
  }));
}

Work GlooCommunicator::DoBroadcast(const Call& call, const void* send, void* recv, size_t count,
                                   DataType dtype, int root) {
  return Work::Completed(
      Run(call, absl::StrCat(Elements(count, dtype), " from root ", root), [&] {
        if (count == 0) return;
        const bool copy_in = rank() == root && send != nullptr && send != recv;
        if (size() == 1) {
          if (copy_in) std::memmove(recv, send, count * DataTypeSize(dtype));
          return;
        }
        WithElementType(dtype, [&](auto t) {
          using T = decltype(t);
          gloo::BroadcastOptions o(context_);
          o.setRoot(root);
          o.setOutput<T>(static_cast<T*>(recv), count);
          if (copy_in) o.setInput<T>(Mutable<T>(send), count);
          o.setTag(Tag(call.seq));
          o.setTimeout(ToMs(call.timeout));
          gloo::broadcast(o);
        });
      }));
}

Work GlooCommunicator::DoBarrier(const Call& call) {
  return Work::Completed(Run(call, "no data", [&] {
    if (size() == 1) return;
    gloo::BarrierOptions o(context_);
    o.setTag(Tag(call.seq));
    o.setTimeout(ToMs(call.timeout));
    gloo::barrier(o);
  }));
}

Work GlooCommunicator::DoSend(const Call& call, const void* buf, size_t count, DataType dtype,
                              int peer) {
  return Work::Completed(Run(call, absl::StrCat(Elements(count, dtype), " to rank ", peer), [&] {
    if (count == 0) return;
    const uint32_t n = sent_to_[static_cast<size_t>(peer)]++;
    std::unique_ptr<gloo::transport::UnboundBuffer> b =
        context_->createUnboundBuffer(const_cast<void*>(buf), count * DataTypeSize(dtype));
    b->send(peer, gloo::Slot::build(kPointToPointSlotPrefix, n));
    b->waitSend(ToMs(call.timeout));
  }));
}

Work GlooCommunicator::DoRecv(const Call& call, void* buf, size_t count, DataType dtype,
                              int peer) {
  return Work::Completed(
      Run(call, absl::StrCat(Elements(count, dtype), " from rank ", peer), [&] {
        if (count == 0) return;
        const uint32_t n = received_from_[static_cast<size_t>(peer)]++;
        std::unique_ptr<gloo::transport::UnboundBuffer> b =
            context_->createUnboundBuffer(buf, count * DataTypeSize(dtype));
        b->recv(peer, gloo::Slot::build(kPointToPointSlotPrefix, n));
        b->waitRecv(ToMs(call.timeout));
      }));
}

absl::StatusOr<std::unique_ptr<Communicator>> GlooCommunicator::DoSplit(const Call& call,
                                                                        int color, int key,
                                                                        std::string name) {
  // Everyone learns everyone's (color, key) through an all-gather on this group.
  std::vector<int64_t> mine = {color, key};
  std::vector<int64_t> all(2 * static_cast<size_t>(size()));
  absl::Status s = Run(call, absl::StrCat("color ", color, " key ", key), [&] {
    if (size() == 1) {
      all = mine;
      return;
    }
    gloo::AllgatherOptions o(context_);
    o.setInput<int64_t>(mine.data(), 2);
    o.setOutput<int64_t>(all.data(), all.size());
    o.setTag(Tag(call.seq));
    o.setTimeout(ToMs(call.timeout));
    gloo::allgather(o);
  });
  if (!s.ok()) return s;
  std::vector<SplitRequest> requests(static_cast<size_t>(size()));
  for (size_t r = 0; r < requests.size(); ++r) {
    requests[r] = {static_cast<int>(all[2 * r]), static_cast<int>(all[2 * r + 1])};
  }
  const SplitPlacement placement = PlanSplit(requests, rank());
  if (placement.rank < 0) return std::unique_ptr<Communicator>();
  // Each split of each generation rendezvouses under its own prefix, so colors never
  // see each other's keys and a repeated split never sees a stale one.
  GlooOptions child = options_;
  child.comm.name = std::move(name);
  auto child_store =
      std::make_shared<PrefixStore>(store_, absl::StrCat("split/", call.seq, "/", color));
  absl::StatusOr<std::unique_ptr<GlooCommunicator>> comm =
      Create(std::move(child_store), placement.rank, placement.size, child, device_);
  if (!comm.ok()) return comm.status();
  return std::unique_ptr<Communicator>(*std::move(comm));
}

}  // namespace colossus::comm::internal

namespace colossus::comm {

absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(std::shared_ptr<Store> store,
                                                                     int rank, int size,
                                                                     const GlooOptions& options) {
  absl::StatusOr<std::unique_ptr<internal::GlooCommunicator>> comm =
      internal::GlooCommunicator::Create(std::move(store), rank, size, options, nullptr);
  if (!comm.ok()) return comm.status();
  return std::unique_ptr<Communicator>(*std::move(comm));
}

}  // namespace colossus::comm
