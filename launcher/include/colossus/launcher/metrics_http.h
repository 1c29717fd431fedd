// MetricsHttpServer: the coordinator's Prometheus scrape endpoint, a minimal HTTP/1.1
// server on plain POSIX sockets.
//
//   auto server = MetricsHttpServer::Start("0.0.0.0", 9400, [&] { return RenderMetrics(); });
//   if (!server.ok()) return server.status();   // names host:port and why
//   ... (*server)->port() ...                    // the bound port (useful with port 0)
//
// Serves GET /metrics (Content-Type: text/plain; version=0.0.4) and GET /healthz ("ok")
// on host:port (port 0 picks a free one) from one background thread. render() is called
// once per /metrics request on that thread and must be thread-safe w.r.t. the caller's
// data. Other paths: 404; other methods: 405; a request larger than 8 KiB or slower than
// 2 s is dropped (a client that never sends cannot block the next one for longer).
//
// Details of the contract:
// - Requests are multiplexed with poll(2): a silent or slow client does not delay the
//   others at all; it only holds one of 64 connection slots until its 2 s run out (with
//   all slots held, new connections wait in the listen backlog until one frees).
// - One request per connection: every response carries "Connection: close" and a
//   Content-Length. A query string is ignored ("/metrics?x" is /metrics).
// - The 2 s count from the accept to the end of the request headers (a client trickling
//   one byte a second is dropped too). A response has 10 s to be read.
// - render() runs on the server thread and blocks it while it runs: keep it to copying
//   numbers under the caller's own lock. An exception from render() becomes a 500.
// - Start fails with InvalidArgument (bad port, empty render, unresolvable host) or
//   Unavailable (bind/listen failed: port in use, address not local), naming host:port.
//
// Thread safety: port() may be called from any thread. The destructor stops the thread
// (waiting for a render() in progress to return), then closes every socket.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace colossus::launcher {

class MetricsHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::function<std::string()> render);
  ~MetricsHttpServer();  // stops the thread, closes the socket

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const;

 private:
  class Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace colossus::launcher
