#include "net/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "sv.h"

namespace colossus::comm::internal {
namespace {

std::string ErrnoText(int err) { return absl::StrCat(strerror(err), " (errno ", err, ")"); }

// Resolves host:port. Numeric addresses do not touch DNS.
absl::StatusOr<addrinfo*> Resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints,
                             &result);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", host, ":", port, "': ", gai_strerror(rc)));
  }
  return result;
}

}  // namespace

int PollTimeoutMs(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  // Round up: a poll that wakes 0.4 ms early would spin once more for nothing.
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
}

absl::Status SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::InternalError(absl::StrCat("fcntl(O_NONBLOCK): ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Fd> ListenTcp(const std::string& host, int port) {
  absl::StatusOr<addrinfo*> ai = Resolve(host, port, /*passive=*/true);
  if (!ai.ok()) return ai.status();
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(*ai, freeaddrinfo);
  int last_err = 0;
  for (addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
    Fd fd(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      last_err = errno;
      continue;
    }
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || listen(fd.get(), 1024) != 0) {
      last_err = errno;
      continue;
    }
    if (absl::Status s = SetNonBlocking(fd.get()); !s.ok()) return s;
    return fd;
  }
  return absl::UnavailableError(
      absl::StrCat("cannot listen on ", host, ":", port, ": ", ErrnoText(last_err)));
}

absl::StatusOr<int> LocalPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(absl::StrCat("getsockname: ", ErrnoText(errno)));
  }
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

absl::StatusOr<Fd> ConnectTcp(const std::string& host, int port, absl::Time deadline) {
  absl::StatusOr<addrinfo*> ai = Resolve(host, port, /*passive=*/false);
  if (!ai.ok()) return ai.status();
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(*ai, freeaddrinfo);
  absl::Duration backoff = absl::Milliseconds(5);
  for (;;) {
    int last_err = 0;
    for (addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
      Fd fd(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
      if (!fd.valid()) {
        last_err = errno;
        continue;
      }
      // Non-blocking connect so the deadline also bounds an unresponsive host.
      if (absl::Status s = SetNonBlocking(fd.get()); !s.ok()) return s;
      int rc = connect(fd.get(), a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd.get(), POLLOUT, 0};
        rc = poll(&p, 1, PollTimeoutMs(deadline));
        if (rc == 1) {
          int err = 0;
          socklen_t len = sizeof(err);
          getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
          errno = err;
          rc = err == 0 ? 0 : -1;
        } else {
          errno = rc == 0 ? ETIMEDOUT : errno;
          rc = -1;
        }
      }
      if (rc != 0) {
        last_err = errno;
        continue;
      }
      const int flags = fcntl(fd.get(), F_GETFL);
      fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
      const int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return fd;
    }
    if (absl::Now() + backoff >= deadline) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", host, ":", port, ": ", ErrnoText(last_err)));
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(200));
  }
}

absl::Status SendAll(int fd, const void* data, size_t n, absl::Time deadline,
                     std::string_view peer) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pf{fd, POLLOUT, 0};
      const int rc = poll(&pf, 1, PollTimeoutMs(deadline));
      if (rc == 0) return absl::DeadlineExceededError(absl::StrCat("send to ", Sv(peer), " timed out"));
      continue;
    }
    return absl::UnavailableError(absl::StrCat("send to ", Sv(peer), " failed: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

absl::Status RecvAll(int fd, void* data, size_t n, absl::Time deadline, std::string_view peer) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    pollfd pf{fd, POLLIN, 0};
    const int rc = poll(&pf, 1, PollTimeoutMs(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {
      return absl::DeadlineExceededError(absl::StrCat("no reply from ", Sv(peer), " before deadline"));
    }
    const ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return absl::UnavailableError(absl::StrCat("connection closed by ", Sv(peer)));
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    return absl::UnavailableError(absl::StrCat("recv from ", Sv(peer), " failed: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

}  // namespace colossus::comm::internal
