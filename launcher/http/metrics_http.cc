#include "colossus/launcher/metrics_http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "colossus/check.h"

namespace colossus::launcher {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxRequestBytes = 8 * 1024;
constexpr auto kRequestTimeout = std::chrono::seconds(2);
constexpr auto kResponseTimeout = std::chrono::seconds(10);
// After the response, how long to wait for the client to close (see Conn::kDraining).
constexpr auto kDrainTimeout = std::chrono::seconds(2);
constexpr size_t kMaxDrainBytes = 64 * 1024;
constexpr size_t kMaxConnections = 64;
// accept() failing for lack of descriptors or memory stays failing while the listen socket
// stays readable: back off instead of spinning.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);

std::string ErrnoText(int err) { return absl::StrCat(std::strerror(err), " (errno ", err, ")"); }

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::string Response(int code, std::string_view reason, std::string_view content_type,
                     std::string_view body, std::string_view extra_headers = "") {
  // Debian's abseil has its own string_view type, so std::string_view goes in by hand.
  std::string out = absl::StrCat("HTTP/1.1 ", code, " ");
  out += reason;
  out += "\r\nContent-Type: ";
  out += content_type;
  out += absl::StrCat("\r\nContent-Length: ", body.size(), "\r\n");
  out += extra_headers;
  out += "Connection: close\r\n\r\n";
  out += body;
  return out;
}

// The end of the request headers ("\r\n\r\n", or "\n\n" from a sloppy client), or npos.
size_t HeaderEnd(std::string_view in) {
  const size_t crlf = in.find("\r\n\r\n");
  const size_t lf = in.find("\n\n");
  if (crlf == std::string_view::npos && lf == std::string_view::npos) return std::string_view::npos;
  if (crlf == std::string_view::npos) return lf + 2;
  if (lf == std::string_view::npos) return crlf + 4;
  return std::min(crlf + 4, lf + 2);
}

struct Conn {
  enum State {
    kReading,   // until the blank line ending the headers; the body, if any, is not read
    kWriting,   // the response
    // Response sent and our side shut down: read and discard until the client closes.
    // Closing a socket with unread input makes the kernel send RST, which can destroy the
    // response before the client has read it (say, a 405 to a POST with a body).
    kDraining,
  };
  Fd fd;
  State state = kReading;
  std::string in;
  std::string out;
  size_t sent = 0;
  size_t drained = 0;
  Clock::time_point deadline;
  bool done = false;  // to be closed and removed
};

}  // namespace

class MetricsHttpServer::Impl {
 public:
  Impl(Fd listen_fd, Fd wake_fd, int port, std::function<std::string()> render)
      : listen_fd_(std::move(listen_fd)),
        wake_fd_(std::move(wake_fd)),
        port_(port),
        render_(std::move(render)),
        thread_([this] { Serve(); }) {}

  ~Impl() {
    const uint64_t one = 1;
    // An eventfd write of 1 cannot block or fail short of a bug (the counter would have to
    // reach 2^64 - 1).
    CHECK(::write(wake_fd_.get(), &one, sizeof(one)) == sizeof(one))
        << "eventfd write: " << ErrnoText(errno);
    thread_.join();
  }

  int port() const { return port_; }

 private:
  void Serve();
  void Accept(Clock::time_point now);
  void OnReadable(Conn& c, Clock::time_point now);
  void OnWritable(Conn& c, Clock::time_point now);
  std::string Handle(std::string_view request);

  Fd listen_fd_;
  Fd wake_fd_;
  const int port_;
  std::function<std::string()> render_;
  std::vector<Conn> conns_;  // touched by the server thread only
  Clock::time_point accept_paused_until_{};
  std::thread thread_;       // last: starts after every member above is constructed
};

void MetricsHttpServer::Impl::Serve() {
  std::vector<pollfd> fds;
  for (;;) {
    Clock::time_point now = Clock::now();
    const bool accepting = conns_.size() < kMaxConnections && now >= accept_paused_until_;
    fds.clear();
    fds.push_back({wake_fd_.get(), POLLIN, 0});
    fds.push_back({accepting ? listen_fd_.get() : -1, POLLIN, 0});  // fd -1: ignored by poll
    Clock::time_point wake_at = Clock::time_point::max();
    if (!accepting && conns_.size() < kMaxConnections) wake_at = accept_paused_until_;
    for (const Conn& c : conns_) {
      const short events = c.state == Conn::kWriting ? POLLOUT : POLLIN;
      fds.push_back({c.fd.get(), events, 0});
      wake_at = std::min(wake_at, c.deadline);
    }
    int timeout_ms = -1;
    if (wake_at != Clock::time_point::max()) {
      // Round up so that a poll waking a fraction of a millisecond early does not spin.
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(wake_at - now).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
    }
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    CHECK(n >= 0 || errno == EINTR) << "poll: " << ErrnoText(errno);
    if (n < 0) continue;
    if (fds[0].revents != 0) return;  // the destructor asked us to stop

    now = Clock::now();
    // Connections first: fds[2 + i] belongs to conns_[i] until Accept appends.
    for (size_t i = 0; i < conns_.size(); ++i) {
      const short revents = fds[2 + i].revents;
      if (revents == 0) continue;
      Conn& c = conns_[i];
      if (c.state == Conn::kWriting) {
        OnWritable(c, now);
      } else {
        OnReadable(c, now);
      }
    }
    for (Conn& c : conns_) {
      if (now >= c.deadline) c.done = true;  // too slow: dropped without a response
    }
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const Conn& c) { return c.done; }),
                 conns_.end());
    if (fds[1].revents != 0) Accept(now);
  }
}

void MetricsHttpServer::Impl::Accept(Clock::time_point now) {
  while (conns_.size() < kMaxConnections) {
    const int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) accept_paused_until_ = now + kAcceptBackoff;
      return;
    }
    Conn c;
    c.fd.reset(fd);
    c.deadline = now + kRequestTimeout;
    conns_.push_back(std::move(c));
  }
}

void MetricsHttpServer::Impl::OnReadable(Conn& c, Clock::time_point now) {
  char buf[4096];
  const ssize_t r = ::recv(c.fd.get(), buf, sizeof(buf), 0);
  if (r < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.done = true;
    return;
  }
  if (r == 0) {  // the client closed: before a full request, or (draining) as it should
    c.done = true;
    return;
  }
  if (c.state == Conn::kDraining) {
    c.drained += static_cast<size_t>(r);
    if (c.drained > kMaxDrainBytes) c.done = true;
    return;
  }
  c.in.append(buf, static_cast<size_t>(r));
  const size_t end = HeaderEnd(c.in);
  if (end == std::string::npos || end > kMaxRequestBytes) {
    if (c.in.size() >= kMaxRequestBytes) c.done = true;  // oversized: dropped
    return;
  }
  c.out = Handle(std::string_view(c.in).substr(0, end));
  c.in.clear();
  c.state = Conn::kWriting;
  c.deadline = now + kResponseTimeout;
  OnWritable(c, now);  // the socket is almost always writable: save a poll round
}

void MetricsHttpServer::Impl::OnWritable(Conn& c, Clock::time_point now) {
  while (c.sent < c.out.size()) {
    const ssize_t w = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent,
                             MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) c.done = true;
      return;
    }
    c.sent += static_cast<size_t>(w);
  }
  ::shutdown(c.fd.get(), SHUT_WR);
  c.state = Conn::kDraining;
  c.deadline = now + kDrainTimeout;
}

std::string MetricsHttpServer::Impl::Handle(std::string_view request) {
  std::string_view line = request.substr(0, request.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // "METHOD SP target SP HTTP/x.y", nothing more.
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos ||
      line.substr(sp2 + 1, 5) != "HTTP/" || sp1 == 0 || sp2 == sp1 + 1) {
    return Response(400, "Bad Request", "text/plain", "bad request line\n");
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  if (path != "/metrics" && path != "/healthz") {
    return Response(404, "Not Found", "text/plain", "not found; try /metrics or /healthz\n");
  }
  if (method != "GET") {
    return Response(405, "Method Not Allowed", "text/plain", "only GET is allowed\n",
                    "Allow: GET\r\n");
  }
  if (path == "/healthz") return Response(200, "OK", "text/plain", "ok");
  std::string body;
  try {
    body = render_();
  } catch (const std::exception& e) {
    return Response(500, "Internal Server Error", "text/plain",
                    absl::StrCat("rendering the metrics failed: ", e.what(), "\n"));
  } catch (...) {
    return Response(500, "Internal Server Error", "text/plain",
                    "rendering the metrics failed: unknown exception\n");
  }
  return Response(200, "OK", "text/plain; version=0.0.4", body);
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsHttpServer::~MetricsHttpServer() = default;
int MetricsHttpServer::port() const { return impl_->port(); }

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::function<std::string()> render) {
  const std::string where = absl::StrCat(host, ":", port);
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics server ", where,
                                                   ": port out of range [0, 65535]"));
  }
  if (!render) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server ", where, ": no render function"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints,
                               &found);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server ", where, ": cannot resolve host: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);

  Fd listen_fd;
  int last_err = 0;
  for (addrinfo* a = list.get(); a != nullptr && !listen_fd.valid(); a = a->ai_next) {
    Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      last_err = errno;
      continue;
    }
    // A restarted coordinator must get its port back while old connections sit in
    // TIME_WAIT.
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      last_err = errno;
      continue;
    }
    listen_fd = std::move(fd);
  }
  if (!listen_fd.valid()) {
    return absl::UnavailableError(
        absl::StrCat("metrics server: cannot listen on ", where, ": ", ErrnoText(last_err)));
  }

  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(listen_fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(
        absl::StrCat("metrics server ", where, ": getsockname: ", ErrnoText(errno)));
  }
  const int bound_port = addr.ss_family == AF_INET6
                             ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);

  Fd wake_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd.valid()) {
    return absl::InternalError(
        absl::StrCat("metrics server ", where, ": eventfd: ", ErrnoText(errno)));
  }
  auto impl = std::make_unique<Impl>(std::move(listen_fd), std::move(wake_fd), bound_port,
                                     std::move(render));
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

}  // namespace colossus::launcher
