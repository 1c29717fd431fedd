// TcpStore: a Store shared by the processes of one job over TCP.
//
// One process (rank 0, a test driver, later the launcher) runs a TcpStoreServer; every
// process, the server's own included, talks to it through a TcpStore client. The
// protocol is length-prefixed frames (src/store/tcp_store_protocol.h). For single-node
// runs and tests; at scale the coordinator's gRPC store takes its place.
//
// No authentication or encryption: bind the server to loopback (the default) or to a
// network only the job's hosts can reach.
//
// Failure behaviour:
//   - A client that dies (even SIGKILL, mid-request or in a held Wait) costs the server
//     only that connection; other clients are unaffected.
//   - When the server goes away, pending and later client calls fail with Unavailable;
//     none blocks past its deadline.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "colossus/comm/store.h"

namespace colossus::comm {

namespace internal {
class Fd;
}

// Serves a key-value table to any number of TcpStore clients from one background
// thread (poll(2) over every connection; Waits are held server-side, not polled).
//
// Thread safety: port() and host() are safe from any thread. Destruction stops the
// thread and closes every connection (clients then see Unavailable).
class TcpStoreServer {
 public:
  // Binds host:port (port 0 picks a free port; see port()) and starts serving.
  // Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> Start(const std::string& host = "127.0.0.1",
                                                               int port = 0);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  const std::string& host() const { return host_; }
  int port() const { return port_; }

  // Number of client connections open right now (tests use it to see a dead client
  // being dropped).
  int num_connections() const { return num_connections_.load(); }

 private:
  class Loop;
  TcpStoreServer(std::string host, int port, std::unique_ptr<Loop> loop);

  std::string host_;
  int port_;
  std::atomic<int> num_connections_{0};
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

struct TcpStoreOptions {
  // How long Connect (and reconnects) keep retrying a refused connection: the server
  // may start after its clients.
  absl::Duration connect_timeout = absl::Seconds(60);
  // Deadline for the reply to any request other than Wait (Wait uses its own timeout
  // plus this much grace, so that the server's answer naming the keys arrives first).
  absl::Duration request_timeout = absl::Seconds(60);
};

// A client of a TcpStoreServer.
//
// Thread safety: all methods may be called concurrently. Each concurrent request uses
// its own connection (kept in a small pool), so a thread blocked in Wait never delays
// another thread's Set.
class TcpStore final : public Store {
 public:
  // Connects once to check the server is there (retrying until connect_timeout).
  static absl::StatusOr<std::unique_ptr<TcpStore>> Connect(const std::string& host, int port,
                                                           const TcpStoreOptions& options = {});
  ~TcpStore() override;
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  absl::Status Set(std::string_view key, std::string_view value) override;
  absl::StatusOr<std::string> Get(std::string_view key) override;
  absl::Status Wait(const std::vector<std::string>& keys, absl::Duration timeout) override;
  absl::StatusOr<int64_t> Add(std::string_view key, int64_t delta) override;
  absl::StatusOr<CompareSetResult> CompareSet(std::string_view key,
                                              std::optional<std::string_view> expected,
                                              std::string_view desired) override;
  absl::StatusOr<bool> Delete(std::string_view key) override;

 private:
  struct Reply;
  TcpStore(std::string host, int port, TcpStoreOptions options);

  // Sends one request frame and returns the reply body after its status byte and
  // message, or the error status (transport errors name `what`).
  absl::StatusOr<Reply> Call(std::string frame, absl::Time deadline, std::string_view what);
  absl::StatusOr<internal::Fd> TakeConnection(absl::Time deadline);
  void ReturnConnection(internal::Fd fd);

  const std::string host_;
  const int port_;
  const std::string peer_;  // "host:port" for messages
  const TcpStoreOptions options_;
  std::mutex mu_;
  std::vector<internal::Fd> idle_;  // guarded by mu_
};

}  // namespace colossus::comm
