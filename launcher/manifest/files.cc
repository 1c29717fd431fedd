#include "files.h"

#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "colossus/launcher/manifest.h"

namespace colossus::launcher {
namespace manifest_internal {
namespace {

// Closes a file descriptor on every path out.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status ErrnoError(int err, const std::string& path, absl::string_view what) {
  const std::string message = absl::StrFormat("%s: %s: %s", path, what, strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EISDIR:
      return absl::FailedPreconditionError(message);
    default:
      return absl::UnknownError(message);
  }
}

}  // namespace

absl::StatusOr<std::string> ReadTextFile(const std::string& path, int64_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(errno, path, "cannot open");
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, path, "cannot read");
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (static_cast<int64_t>(text.size()) > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: larger than %d bytes; is it the right file?", path, max_bytes));
    }
  }
  return text;
}

std::string ResolvePath(absl::string_view base_dir, absl::string_view path) {
  std::filesystem::path p{std::string(path)};
  if (p.is_relative()) p = std::filesystem::path(std::string(base_dir)) / p;
  std::string normal = p.lexically_normal().string();
  // "runs/" and "runs" name the same directory; keep one spelling.
  if (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  return normal;
}

std::string CurrentDirectory() {
  std::error_code ec;
  std::filesystem::path cwd = std::filesystem::current_path(ec);
  return ec ? std::string(".") : cwd.string();
}

std::string AbsoluteDirectoryOf(absl::string_view path) {
  const std::filesystem::path parent = std::filesystem::path(std::string(path)).parent_path();
  return ResolvePath(CurrentDirectory(), parent.empty() ? std::string(".") : parent.string());
}

ThisMachine::ThisMachine() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0) hostname_ = absl::AsciiStrToLower(name);
  ifaddrs* addresses = nullptr;
  if (::getifaddrs(&addresses) != 0) return;
  for (ifaddrs* a = addresses; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    const int family = a->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    char text[NI_MAXHOST] = {};
    const socklen_t size = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (::getnameinfo(a->ifa_addr, size, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) == 0) {
      const std::string address = text;
      addresses_.insert(absl::AsciiStrToLower(address.substr(0, address.find('%'))));  // no zone
    }
  }
  ::freeifaddrs(addresses);
}

bool ThisMachine::Is(absl::string_view host) const {
  const std::string h = absl::AsciiStrToLower(host);
  if (h == "localhost" || h == "::1" || absl::StartsWith(h, "127.") || absl::EndsWith(h, ".localhost")) {
    return true;
  }
  if (!hostname_.empty()) {
    // The short forms compare too: "gpu-a" and "gpu-a.cluster.local" are one machine.
    const auto short_name = [](const std::string& s) { return s.substr(0, s.find('.')); };
    const bool is_name = std::any_of(h.begin(), h.end(), absl::ascii_isalpha) && !absl::StrContains(h, ':');
    if (h == hostname_ || (is_name && short_name(h) == short_name(hostname_))) return true;
  }
  return addresses_.count(h) != 0;
}

}  // namespace manifest_internal

bool IsThisMachine(std::string_view host) {
  return manifest_internal::ThisMachine().Is(absl::string_view(host.data(), host.size()));
}

}  // namespace colossus::launcher
