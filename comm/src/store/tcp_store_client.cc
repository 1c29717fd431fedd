#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/comm/tcp_store.h"
#include "net/fd.h"
#include "net/socket.h"
#include "store/kv_table.h"
#include "sv.h"
#include "store/tcp_store_protocol.h"

namespace colossus::comm {

namespace ts = internal::tcp_store;
using internal::Fd;

// The fields of an OK reply, read with a Reader over `body`.
struct TcpStore::Reply {
  std::string body;
};

namespace {

// Idle connections kept for reuse; more than this many concurrent callers simply open
// (and then close) extra ones.
constexpr size_t kMaxIdle = 8;

absl::Status Malformed(std::string_view peer, std::string_view what) {
  return absl::InternalError(absl::StrCat("tcp store ", internal::Sv(peer), ": malformed reply to ", internal::Sv(what)));
}

}  // namespace

TcpStore::TcpStore(std::string host, int port, TcpStoreOptions options)
    : host_(std::move(host)),
      port_(port),
      peer_(absl::StrCat(host_, ":", port_)),
      options_(options) {}

TcpStore::~TcpStore() = default;

absl::StatusOr<std::unique_ptr<TcpStore>> TcpStore::Connect(const std::string& host, int port,
                                                            const TcpStoreOptions& options) {
  std::unique_ptr<TcpStore> store(new TcpStore(host, port, options));
  absl::StatusOr<Fd> fd = internal::ConnectTcp(host, port, absl::Now() + options.connect_timeout);
  if (!fd.ok()) return absl::UnavailableError(absl::StrCat("tcp store: ", fd.status().message()));
  store->ReturnConnection(*std::move(fd));
  return store;
}

absl::StatusOr<Fd> TcpStore::TakeConnection(absl::Time deadline) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      Fd fd = std::move(idle_.back());
      idle_.pop_back();
      return fd;
    }
  }
  return internal::ConnectTcp(host_, port_,
                              std::min(deadline, absl::Now() + options_.connect_timeout));
}

void TcpStore::ReturnConnection(Fd fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < kMaxIdle) idle_.push_back(std::move(fd));
}

absl::StatusOr<TcpStore::Reply> TcpStore::Call(std::string frame, absl::Time deadline,
                                               std::string_view what) {
  auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat("tcp store ", peer_, ": ", internal::Sv(what), ": ", s.message()));
  };
  absl::StatusOr<Fd> fd = TakeConnection(deadline);
  if (!fd.ok()) return fail(absl::UnavailableError(fd.status().message()));
  // On any transport error the connection is dropped (Fd closes it): its stream
  // position is unknown, so it cannot carry another request.
  if (absl::Status s = internal::SendAll(fd->get(), frame.data(), frame.size(), deadline, peer_);
      !s.ok()) {
    return fail(s);
  }
  char prefix[4];
  if (absl::Status s = internal::RecvAll(fd->get(), prefix, 4, deadline, peer_); !s.ok()) {
    return fail(s);
  }
  const uint32_t n = ts::DecodeLength(prefix);
  if (n > ts::kMaxFrameBytes) return Malformed(peer_, what);
  Reply reply;
  reply.body.resize(n);
  if (absl::Status s = internal::RecvAll(fd->get(), reply.body.data(), n, deadline, peer_);
      !s.ok()) {
    return fail(s);
  }
  ReturnConnection(*std::move(fd));

  ts::Reader r(reply.body);
  uint8_t code = 0;
  std::string message;
  if (!r.U8(&code) || !r.Bytes(&message)) return Malformed(peer_, what);
  if (code != static_cast<uint8_t>(absl::StatusCode::kOk)) {
    return absl::Status(static_cast<absl::StatusCode>(code),
                        absl::StrCat("tcp store ", peer_, ": ", message));
  }
  // Strip the status byte and message so callers read only their fields.
  reply.body.erase(0, 1 + 4 + message.size());
  return reply;
}

absl::Status TcpStore::Set(std::string_view key, std::string_view value) {
  std::string frame = ts::Writer().U8(ts::kSet).Bytes(key).Bytes(value).Finish();
  return Call(std::move(frame), absl::Now() + options_.request_timeout,
              absl::StrCat("Set '", internal::Sv(key), "'"))
      .status();
}

absl::StatusOr<std::string> TcpStore::Get(std::string_view key) {
  const std::string what = absl::StrCat("Get '", internal::Sv(key), "'");
  absl::StatusOr<Reply> reply = Call(ts::Writer().U8(ts::kGet).Bytes(key).Finish(),
                                     absl::Now() + options_.request_timeout, what);
  if (!reply.ok()) return reply.status();
  ts::Reader r(reply->body);
  std::string value;
  if (!r.Bytes(&value)) return Malformed(peer_, what);
  return value;
}

absl::Status TcpStore::Wait(const std::vector<std::string>& keys, absl::Duration timeout) {
  if (keys.empty()) return absl::OkStatus();
  const uint64_t ms =
      timeout == absl::InfiniteDuration()
          ? ts::kInfiniteMs
          : static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout)));
  ts::Writer w;
  w.U8(ts::kWait).U64(ms).U64(keys.size());
  for (const auto& k : keys) w.Bytes(k);
  const absl::Time deadline = timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + timeout + options_.request_timeout;
  return Call(w.Finish(), deadline,
              absl::StrCat("Wait ", internal::FormatKeys(keys)))
      .status();
}

absl::StatusOr<int64_t> TcpStore::Add(std::string_view key, int64_t delta) {
  const std::string what = absl::StrCat("Add '", internal::Sv(key), "'");
  absl::StatusOr<Reply> reply =
      Call(ts::Writer().U8(ts::kAdd).Bytes(key).U64(static_cast<uint64_t>(delta)).Finish(),
           absl::Now() + options_.request_timeout, what);
  if (!reply.ok()) return reply.status();
  ts::Reader r(reply->body);
  uint64_t v = 0;
  if (!r.U64(&v)) return Malformed(peer_, what);
  return static_cast<int64_t>(v);
}

absl::StatusOr<CompareSetResult> TcpStore::CompareSet(std::string_view key,
                                                      std::optional<std::string_view> expected,
                                                      std::string_view desired) {
  const std::string what = absl::StrCat("CompareSet '", internal::Sv(key), "'");
  std::string frame = ts::Writer()
                          .U8(ts::kCompareSet)
                          .Bytes(key)
                          .U8(expected.has_value() ? 1 : 0)
                          .Bytes(expected.value_or(""))
                          .Bytes(desired)
                          .Finish();
  absl::StatusOr<Reply> reply =
      Call(std::move(frame), absl::Now() + options_.request_timeout, what);
  if (!reply.ok()) return reply.status();
  ts::Reader r(reply->body);
  uint8_t swapped = 0, has_value = 0;
  std::string value;
  if (!r.U8(&swapped) || !r.U8(&has_value) || !r.Bytes(&value)) return Malformed(peer_, what);
  CompareSetResult result;
  result.swapped = swapped != 0;
  if (has_value) result.value = std::move(value);
  return result;
}

absl::StatusOr<bool> TcpStore::Delete(std::string_view key) {
  const std::string what = absl::StrCat("Delete '", internal::Sv(key), "'");
  absl::StatusOr<Reply> reply = Call(ts::Writer().U8(ts::kDelete).Bytes(key).Finish(),
                                     absl::Now() + options_.request_timeout, what);
  if (!reply.ok()) return reply.status();
  ts::Reader r(reply->body);
  uint8_t existed = 0;
  if (!r.U8(&existed)) return Malformed(peer_, what);
  return existed != 0;
}

}  // namespace colossus::comm
