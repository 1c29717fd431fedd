// Blocking-with-deadline TCP helpers for the store (the Gloo transport has its own).
//
// Every send uses MSG_NOSIGNAL: a peer that died must give us EPIPE as a Status, not a
// SIGPIPE that kills this process. Deadlines are absolute; absl::InfiniteFuture() waits
// forever. Messages name the peer "host:port" given by the caller.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/fd.h"

namespace colossus::comm::internal {

// A listening socket bound to host:port (port 0: an ephemeral port), non-blocking.
absl::StatusOr<Fd> ListenTcp(const std::string& host, int port);

// The local port a socket is bound to.
absl::StatusOr<int> LocalPort(int fd);

// Connects to host:port, retrying refused connections until `deadline` (the server may
// not be up yet). The socket is blocking with TCP_NODELAY.
absl::StatusOr<Fd> ConnectTcp(const std::string& host, int port, absl::Time deadline);

// Writes or reads exactly n bytes. DeadlineExceeded past the deadline, Unavailable when
// the connection fails or (RecvAll) the peer closes it.
absl::Status SendAll(int fd, const void* data, size_t n, absl::Time deadline,
                     std::string_view peer);
absl::Status RecvAll(int fd, void* data, size_t n, absl::Time deadline, std::string_view peer);

absl::Status SetNonBlocking(int fd);

// Milliseconds until deadline for poll(2): -1 for an infinite deadline, 0 if past,
// capped so that it fits an int.
int PollTimeoutMs(absl::Time deadline);

}  // namespace colossus::comm::internal
