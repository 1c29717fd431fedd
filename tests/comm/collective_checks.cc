#include "collective_checks.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "test_values.h"

namespace colossus::comm::testing {
namespace {

constexpr size_t kLargeBytes = size_t{3} << 20;  // 3 MiB

std::string Where(const Communicator& comm, const char* op, DataType t, size_t count,
                  bool in_place, const char* extra = "") {
  return absl::StrCat(op, " ", DataTypeName(t), " count ", count,
                      in_place ? " in-place" : " out-of-place", extra, " on rank ", comm.rank(),
                      " of ", comm.size());
}

void Fill(DataType t, void* buf, int rank, size_t count, size_t offset = 0) {
  for (size_t i = 0; i < count; ++i) Store(t, buf, offset + i, Value(t, rank, i));
}

// Compares `count` elements at buf[offset..] with want(i); reports the first mismatch.
template <typename Want>
absl::Status Compare(DataType t, const void* buf, size_t offset, size_t count, Want want,
                     const std::string& where) {
  for (size_t i = 0; i < count; ++i) {
    const double got = Load(t, buf, offset + i);
    const double expected = want(i);
    if (!(got == expected)) {
      return absl::InternalError(absl::StrCat(where, ": element ", i, " is ", got,
                                              ", expected ", expected));
    }
  }
  return absl::OkStatus();
}

absl::Status Ok(const Work& w, const std::string& where) {
  absl::Status s = w.Wait();
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
  return s;
}

}  // namespace

std::vector<size_t> TestCounts(DataType t) {
  return {0, 1, 1009, kLargeBytes / DataTypeSize(t) + 3};
}

absl::Status CheckAllReduce(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DataType t : kAllTypes) {
    const size_t es = DataTypeSize(t);
    for (size_t count : TestCounts(t)) {
      for (ReduceOp op : kAllOps) {
        for (bool in_place : {false, true}) {
          const std::string where =
              Where(comm, "all_reduce", t, count, in_place, absl::StrCat(" ", ReduceOpName(op)).c_str());
          std::vector<char> send(count * es), recv = Poisoned(count * es);
          Fill(t, send.data(), me, count);
          const std::vector<char> original = send;
          void* out = in_place ? send.data() : recv.data();
          if (absl::Status s = Ok(comm.AllReduce(send.data(), out, count, t, op), where); !s.ok()) {
            return s;
          }
          if (absl::Status s = Compare(t, out, 0, count,
                                       [&](size_t i) { return Expected(t, op, n, i); }, where);
              !s.ok()) {
            return s;
          }
          if (!in_place && send != original) {
            return absl::InternalError(absl::StrCat(where, ": the send buffer was modified"));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckReduceScatter(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DataType t : kAllTypes) {
    const size_t es = DataTypeSize(t);
    for (size_t total : TestCounts(t)) {
      const size_t rc = total <= 1009 ? total : total / static_cast<size_t>(n);
      for (ReduceOp op : kAllOps) {
        for (bool in_place : {false, true}) {
          const std::string where = Where(comm, "reduce_scatter", t, rc, in_place,
                                          absl::StrCat(" ", ReduceOpName(op)).c_str());
          // Rank me's input: element j of the full vector is Value(me, j).
          std::vector<char> send(rc * static_cast<size_t>(n) * es), recv = Poisoned(rc * es);
          Fill(t, send.data(), me, rc * static_cast<size_t>(n));
          const std::vector<char> original = send;
          char* out = in_place ? send.data() + static_cast<size_t>(me) * rc * es : recv.data();
          if (absl::Status s = Ok(comm.ReduceScatter(send.data(), out, rc, t, op), where); !s.ok()) {
            return s;
          }
          const size_t base = static_cast<size_t>(me) * rc;
          if (absl::Status s = Compare(t, out, 0, rc,
                                       [&](size_t i) { return Expected(t, op, n, base + i); },
                                       where);
              !s.ok()) {
            return s;
          }
          if (!in_place && send != original) {
            return absl::InternalError(absl::StrCat(where, ": the send buffer was modified"));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckAllGather(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DataType t : kAllTypes) {
    const size_t es = DataTypeSize(t);
    for (size_t total : TestCounts(t)) {
      const size_t sc = total <= 1009 ? total : total / static_cast<size_t>(n);
      for (bool in_place : {false, true}) {
        const std::string where = Where(comm, "all_gather", t, sc, in_place);
        std::vector<char> send(sc * es), recv = Poisoned(sc * static_cast<size_t>(n) * es);
        Fill(t, send.data(), me, sc);
        const void* in = send.data();
        if (in_place) {
          Fill(t, recv.data(), me, sc, static_cast<size_t>(me) * sc);
          in = recv.data() + static_cast<size_t>(me) * sc * es;
        }
        if (absl::Status s = Ok(comm.AllGather(in, recv.data(), sc, t), where); !s.ok()) return s;
        for (int r = 0; r < n; ++r) {
          if (absl::Status s = Compare(t, recv.data(), static_cast<size_t>(r) * sc, sc,
                                       [&](size_t i) { return Value(t, r, i); },
                                       absl::StrCat(where, " block ", r));
              !s.ok()) {
            return s;
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckAllToAll(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DataType t : kAllTypes) {
    const size_t es = DataTypeSize(t);
    for (size_t total : TestCounts(t)) {
      const size_t c = total <= 1009 ? total : total / static_cast<size_t>(n);
      const std::string where = Where(comm, "all_to_all", t, c, false);
      // Rank me's send element k is Value(me, k): block j (elements j*c..) goes to rank j.
      std::vector<char> send(c * static_cast<size_t>(n) * es),
          recv = Poisoned(c * static_cast<size_t>(n) * es);
      Fill(t, send.data(), me, c * static_cast<size_t>(n));
      if (absl::Status s = Ok(comm.AllToAll(send.data(), recv.data(), c, t), where); !s.ok()) {
        return s;
      }
      for (int j = 0; j < n; ++j) {
        if (absl::Status s = Compare(t, recv.data(), static_cast<size_t>(j) * c, c,
                                     [&](size_t i) {
                                       return Value(t, j, static_cast<size_t>(me) * c + i);
                                     },
                                     absl::StrCat(where, " block from rank ", j));
            !s.ok()) {
          return s;
        }
      }
    }
  }
  // In place is refused without taking a sequence number.
  std::vector<char> buf(static_cast<size_t>(n) * 4);
  const uint64_t seq = comm.last_seq();
  if (comm.AllToAll(buf.data(), buf.data(), 1, DataType::kF32).Wait().code() !=
          absl::StatusCode::kInvalidArgument ||
      comm.last_seq() != seq) {
    return absl::InternalError("in-place all_to_all was not refused as InvalidArgument");
  }
  return absl::OkStatus();
}

absl::Status CheckBroadcast(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DataType t : kAllTypes) {
    const size_t es = DataTypeSize(t);
    for (size_t count : TestCounts(t)) {
      // Every root for the small sizes; the last rank (not 0) for the large one.
      const int first_root = count > 1009 ? n - 1 : 0;
      for (int root = first_root; root < n; ++root) {
        for (bool in_place : {false, true}) {
          const std::string where = Where(comm, "broadcast", t, count, in_place,
                                          absl::StrCat(" root ", root).c_str());
          std::vector<char> send(count * es), recv = Poisoned(count * es);
          Fill(t, send.data(), me, count);
          const void* in = send.data();
          if (in_place && me == root) {
            Fill(t, recv.data(), me, count);
            in = recv.data();
          }
          if (absl::Status s = Ok(comm.Broadcast(in, recv.data(), count, t, root), where);
              !s.ok()) {
            return s;
          }
          if (absl::Status s = Compare(t, recv.data(), 0, count,
                                       [&](size_t i) { return Value(t, root, i); }, where);
              !s.ok()) {
            return s;
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSendRecv(Communicator& comm) {
  // A chain around the ring: rank 0 sends first, every other rank receives from its
  // left neighbour and then sends right, and rank 0 receives last. Sends block until
  // the matching receive is posted, so this order never waits on itself.
  const int n = comm.size(), me = comm.rank();
  const int right = (me + 1) % n, left = (me + n - 1) % n;
  for (DataType t : kAllTypes) {
    const size_t es = DataTypeSize(t);
    for (size_t count : TestCounts(t)) {
      const std::string where = Where(comm, "send/recv", t, count, false);
      std::vector<char> send(count * es), recv = Poisoned(count * es);
      Fill(t, send.data(), me, count);
      auto do_send = [&] { return Ok(comm.Send(send.data(), count, t, right), where + " send"); };
      auto do_recv = [&] { return Ok(comm.Recv(recv.data(), count, t, left), where + " recv"); };
      absl::Status s = me == 0 ? do_send() : do_recv();
      if (s.ok()) s = me == 0 ? do_recv() : do_send();
      if (!s.ok()) return s;
      if (absl::Status c = Compare(t, recv.data(), 0, count,
                                   [&](size_t i) { return Value(t, left, i); }, where);
          !c.ok()) {
        return c;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBarrier(Communicator& comm) {
  // Rank r enters after r x 100 ms. No rank may leave before the last one entered;
  // the ranks share this machine's clock, so entry and exit times compare directly.
  for (int round = 0; round < 2; ++round) {
    absl::SleepFor(absl::Milliseconds(100) * comm.rank());
    const int64_t entered = absl::ToUnixNanos(absl::Now());
    if (absl::Status s = comm.Barrier().Wait(); !s.ok()) return s;
    const int64_t left = absl::ToUnixNanos(absl::Now());
    std::vector<int64_t> entries(static_cast<size_t>(comm.size()));
    if (absl::Status s = comm.AllGather(&entered, entries.data(), 1, DataType::kI64).Wait();
        !s.ok()) {
      return s;
    }
    const int64_t last = *std::max_element(entries.begin(), entries.end());
    if (left < last) {
      return absl::InternalError(absl::StrCat("barrier round ", round, " on rank ", comm.rank(),
                                              " returned ", (last - left) / 1000,
                                              " us before the last rank entered"));
    }
  }
  return absl::OkStatus();
}

}  // namespace colossus::comm::testing
