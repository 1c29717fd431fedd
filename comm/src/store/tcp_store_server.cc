// TcpStoreServer: one thread, poll(2) over the listening socket, a wake-up pipe and
// every client connection. Requests are answered in place except a Wait whose keys
// are missing: it is parked on its connection and answered when a write completes
// the keys or its deadline passes (poll's timeout is the nearest deadline).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <list>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "colossus/comm/tcp_store.h"
#include "net/fd.h"
#include "net/socket.h"
#include "store/kv_table.h"
#include "store/tcp_store_protocol.h"

namespace colossus::comm {

namespace ts = internal::tcp_store;
using internal::Fd;

namespace {

struct ParkedWait {
  std::vector<std::string> keys;
  absl::Time deadline;
  absl::Duration timeout;
};

struct Connection {
  Fd fd;
  std::string in;   // bytes received, not yet parsed
  std::string out;  // replies not yet written
  std::optional<ParkedWait> wait;
  bool dead = false;
};

std::string ErrorReply(absl::StatusCode code, absl::string_view message) {
  return ts::Writer().U8(static_cast<uint8_t>(code)).Bytes(std::string_view(message.data(), message.size())).Finish();
}

ts::Writer OkReply() {
  ts::Writer w;
  w.U8(static_cast<uint8_t>(absl::StatusCode::kOk)).Bytes("");
  return w;
}

}  // namespace

class TcpStoreServer::Loop {
 public:
  Loop(Fd listen, Fd wake_read, Fd wake_write, std::atomic<int>* num_connections)
      : listen_(std::move(listen)),
        wake_read_(std::move(wake_read)),
        wake_write_(std::move(wake_write)),
        num_connections_(num_connections) {}

  void Run();
  void Stop() {
    const char c = 0;
    // A full pipe already holds a wake-up; nothing else can fail here that matters.
    [[maybe_unused]] ssize_t n = write(wake_write_.get(), &c, 1);
  }

 private:
  void Accept();
  void ReadFrom(Connection& c);
  void WriteTo(Connection& c);
  // Parses and answers complete frames until the buffer runs dry or a Wait parks.
  void Process(Connection& c);
  std::string Handle(Connection& c, std::string_view body);
  // Answers parked Waits that are now satisfied or past their deadline.
  void ServeParked();

  Fd listen_, wake_read_, wake_write_;
  std::atomic<int>* num_connections_;
  std::list<Connection> conns_;
  internal::KvTable table_;
};

void TcpStoreServer::Loop::Run() {
  std::vector<pollfd> fds;
  std::vector<Connection*> order;
  for (;;) {
    fds.clear();
    order.clear();
    fds.push_back({wake_read_.get(), POLLIN, 0});
    fds.push_back({listen_.get(), POLLIN, 0});
    absl::Time next_deadline = absl::InfiniteFuture();
    for (Connection& c : conns_) {
      short events = POLLIN;
      if (!c.out.empty()) events |= POLLOUT;
      fds.push_back({c.fd.get(), events, 0});
      order.push_back(&c);
      if (c.wait) next_deadline = std::min(next_deadline, c.wait->deadline);
    }
    const int rc = poll(fds.data(), fds.size(), internal::PollTimeoutMs(next_deadline));
    if (rc < 0 && errno != EINTR) {
      CHECK(false) << "tcp store server: poll failed: " << strerror(errno);
    }
    if (fds[0].revents != 0) return;  // Stop()
    if (fds[1].revents & POLLIN) Accept();
    for (size_t i = 0; i < order.size(); ++i) {
      Connection& c = *order[i];
      const short re = fds[i + 2].revents;
      if (re & (POLLIN | POLLHUP | POLLERR)) ReadFrom(c);
      if (!c.dead && (re & POLLOUT)) WriteTo(c);
    }
    ServeParked();
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (it->dead) {
        it = conns_.erase(it);  // closes the socket; drops a parked Wait with it
        num_connections_->fetch_sub(1);
      } else {
        ++it;
      }
    }
  }
}

void TcpStoreServer::Loop::Accept() {
  for (;;) {
    const int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a transient error: try again on the next event
    conns_.emplace_back();
    conns_.back().fd.reset(fd);
    num_connections_->fetch_add(1);
  }
}

void TcpStoreServer::Loop::ReadFrom(Connection& c) {
  char buf[64 << 10];
  for (;;) {
    const ssize_t n = recv(c.fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // EOF or a reset: the client is gone (it may have been killed mid-request).
    c.dead = true;
    return;
  }
  Process(c);
  if (!c.dead && !c.out.empty()) WriteTo(c);
}

void TcpStoreServer::Loop::WriteTo(Connection& c) {
  while (!c.out.empty()) {
    const ssize_t n = send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // POLLOUT later
    c.dead = true;
    return;
  }
}

void TcpStoreServer::Loop::Process(Connection& c) {
  size_t pos = 0;
  while (!c.wait && !c.dead && c.in.size() - pos >= 4) {
    const uint32_t n = ts::DecodeLength(c.in.data() + pos);
    if (n > ts::kMaxFrameBytes) {
      c.dead = true;  // not our protocol, or corrupt: drop the client
      break;
    }
    if (c.in.size() - pos - 4 < n) break;
    c.out += Handle(c, std::string_view(c.in).substr(pos + 4, n));
    pos += 4 + n;
  }
  c.in.erase(0, pos);
}

std::string TcpStoreServer::Loop::Handle(Connection& c, std::string_view body) {
  ts::Reader r(body);
  uint8_t op = 0;
  std::string key;
  auto bad = [&] {
    return ErrorReply(absl::StatusCode::kInvalidArgument,
                      absl::StrCat("malformed ", ts::OpcodeName(op), " request"));
  };
  if (!r.U8(&op)) return bad();
  switch (op) {
    case ts::kSet: {
      std::string value;
      if (!r.Bytes(&key) || !r.Bytes(&value)) return bad();
      table_.Set(key, value);
      return OkReply().Finish();
    }
    case ts::kGet: {
      if (!r.Bytes(&key)) return bad();
      std::optional<std::string> v = table_.Get(key);
      if (!v) return ErrorReply(absl::StatusCode::kNotFound, absl::StrCat("key '", key, "' not found"));
      return OkReply().Bytes(*v).Finish();
    }
    case ts::kWait: {
      uint64_t ms = 0, n = 0;
      if (!r.U64(&ms) || !r.U64(&n)) return bad();
      ParkedWait w;
      for (uint64_t i = 0; i < n; ++i) {
        if (!r.Bytes(&key)) return bad();
        w.keys.push_back(std::move(key));
      }
      if (table_.Missing(w.keys).empty()) return OkReply().Finish();
      w.timeout = ms >= ts::kInfiniteMs ? absl::InfiniteDuration()
                                        : absl::Milliseconds(static_cast<int64_t>(ms));
      w.deadline = absl::Now() + w.timeout;
      c.wait = std::move(w);
      return "";  // answered by ServeParked
    }
    case ts::kAdd: {
      uint64_t delta = 0;
      if (!r.Bytes(&key) || !r.U64(&delta)) return bad();
      absl::StatusOr<int64_t> v = table_.Add(key, static_cast<int64_t>(delta));
      if (!v.ok()) return ErrorReply(v.status().code(), v.status().message());
      return OkReply().U64(static_cast<uint64_t>(*v)).Finish();
    }
    case ts::kCompareSet: {
      uint8_t has_expected = 0;
      std::string expected, desired;
      if (!r.Bytes(&key) || !r.U8(&has_expected) || !r.Bytes(&expected) || !r.Bytes(&desired)) {
        return bad();
      }
      CompareSetResult res = table_.CompareSet(
          key, has_expected ? std::optional<std::string_view>(expected) : std::nullopt, desired);
      return OkReply()
          .U8(res.swapped ? 1 : 0)
          .U8(res.value.has_value() ? 1 : 0)
          .Bytes(res.value.value_or(""))
          .Finish();
    }
    case ts::kDelete: {
      if (!r.Bytes(&key)) return bad();
      return OkReply().U8(table_.Delete(key) ? 1 : 0).Finish();
    }
  }
  return ErrorReply(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("unknown store opcode ", static_cast<int>(op)));
}

void TcpStoreServer::Loop::ServeParked() {
  // A reply can unpark frames queued behind the Wait whose writes satisfy another
  // parked Wait: repeat until nothing changes.
  bool progress = true;
  while (progress) {
    progress = false;
    const absl::Time now = absl::Now();
    for (Connection& c : conns_) {
      if (c.dead || !c.wait) continue;
      std::vector<std::string> missing = table_.Missing(c.wait->keys);
      if (missing.empty()) {
        c.out += OkReply().Finish();
      } else if (now >= c.wait->deadline) {
        absl::Status s =
            internal::WaitTimeoutError("store", missing, c.wait->keys.size(), c.wait->timeout);
        c.out += ErrorReply(s.code(), s.message());
      } else {
        continue;
      }
      c.wait.reset();
      Process(c);
      WriteTo(c);
      progress = true;
    }
  }
}

TcpStoreServer::TcpStoreServer(std::string host, int port, std::unique_ptr<Loop> loop)
    : host_(std::move(host)), port_(port), loop_(std::move(loop)) {}

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(const std::string& host,
                                                                      int port) {
  absl::StatusOr<Fd> listen = internal::ListenTcp(host, port);
  if (!listen.ok()) return listen.status();
  absl::StatusOr<int> bound = internal::LocalPort(listen->get());
  if (!bound.ok()) return bound.status();
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("tcp store server: pipe2: ", strerror(errno)));
  }
  std::unique_ptr<TcpStoreServer> server(new TcpStoreServer(host, *bound, nullptr));
  server->loop_ = std::make_unique<Loop>(*std::move(listen), Fd(pipe_fds[0]), Fd(pipe_fds[1]),
                                         &server->num_connections_);
  server->thread_ = std::thread([loop = server->loop_.get()] { loop->Run(); });
  return server;
}

TcpStoreServer::~TcpStoreServer() {
  loop_->Stop();
  thread_.join();
}

}  // namespace colossus::comm
