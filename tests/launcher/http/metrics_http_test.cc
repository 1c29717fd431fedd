// The metrics endpoint as a scraper sees it: real loopback sockets, raw HTTP bytes.
#include "colossus/launcher/metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "colossus/launcher/prometheus_text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::HasSubstr;

// A client socket that closes itself.
class Client {
 public:
  // Connects to 127.0.0.1:port; every send and receive gives up after timeout_s.
  Client(int port, int timeout_s) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{timeout_s, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  // Sends all of data; false if the server closed or reset the connection first.
  bool Send(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t w = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (w <= 0) return false;
      done += static_cast<size_t>(w);
    }
    return true;
  }

  // Reads until the server closes. *error is "" on an orderly close, "timeout" when the
  // server neither sent nor closed within the timeout, else the errno text.
  std::string ReadAll(std::string* error) {
    std::string out;
    char buf[4096];
    for (;;) {
      const ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
      if (r > 0) {
        out.append(buf, static_cast<size_t>(r));
        continue;
      }
      if (r == 0) {
        *error = "";
      } else {
        *error = (errno == EAGAIN || errno == EWOULDBLOCK) ? "timeout" : std::strerror(errno);
      }
      return out;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string error;  // non-empty when the exchange failed
};

HttpResponse Parse(const std::string& raw) {
  HttpResponse r;
  const size_t end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) {
    r.error = absl::StrCat("not an HTTP response: '", raw, "'");
    return r;
  }
  r.status = std::atoi(raw.c_str() + 9);
  size_t pos = raw.find("\r\n") + 2;
  while (pos < end) {
    const size_t eol = raw.find("\r\n", pos);
    const std::string line = raw.substr(pos, eol - pos);
    const size_t colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    pos = eol + 2;
  }
  r.body = raw.substr(end + 4);
  return r;
}

// One request over a fresh connection, as a scraper makes it.
HttpResponse Request(int port, const std::string& raw_request, int timeout_s = 5) {
  Client c(port, timeout_s);
  HttpResponse r;
  if (!c.connected()) {
    r.error = "connect failed";
    return r;
  }
  c.Send(raw_request);
  std::string error;
  const std::string raw = c.ReadAll(&error);
  r = Parse(raw);
  if (!error.empty()) r.error = absl::StrCat(error, "; ", r.error);
  return r;
}

HttpResponse Get(int port, const std::string& path, int timeout_s = 5) {
  return Request(port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: localhost\r\n",
                                    "User-Agent: test\r\nAccept: */*\r\n\r\n"),
                 timeout_s);
}

std::unique_ptr<MetricsHttpServer> StartServer(std::function<std::string()> render) {
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, std::move(render));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(MetricsHttpServerTest, ServesMetricsRenderedPerRequest) {
  std::atomic<int> renders{0};
  auto server = StartServer([&] {
    const int n = ++renders;
    PrometheusText t;
    t.Counter("colossus_scrapes_total", "Scrapes served.", n);
    t.Gauge("colossus_node_up", "Agent connected.", 1, {{"node", "a\"b"}});
    return t.str();
  });
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  for (int i = 1; i <= 2; ++i) {
    const HttpResponse r = Get(server->port(), "/metrics");
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers.at("content-type"), "text/plain; version=0.0.4");
    EXPECT_EQ(r.headers.at("content-length"), std::to_string(r.body.size()));
    EXPECT_EQ(r.headers.at("connection"), "close");
    EXPECT_EQ(r.body, absl::StrCat("# HELP colossus_scrapes_total Scrapes served.\n"
                                   "# TYPE colossus_scrapes_total counter\n"
                                   "colossus_scrapes_total ", i, "\n"
                                   "# HELP colossus_node_up Agent connected.\n"
                                   "# TYPE colossus_node_up gauge\n"
                                   "colossus_node_up{node=\"a\\\"b\"} 1\n"));
    EXPECT_EQ(renders.load(), i) << "render() runs once per /metrics request";
  }
  // HTTP/1.0 with bare LF line ends and a query string: still the metrics.
  const HttpResponse r = Request(server->port(), "GET /metrics?name[]=x HTTP/1.0\n\n");
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("colossus_scrapes_total 3\n"));
}

TEST(MetricsHttpServerTest, HealthzSaysOkWithoutRendering) {
  std::atomic<int> renders{0};
  auto server = StartServer([&] {
    ++renders;
    return std::string();
  });
  ASSERT_NE(server, nullptr);
  const HttpResponse r = Get(server->port(), "/healthz");
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(renders.load(), 0);
}

TEST(MetricsHttpServerTest, UnknownPathIs404OtherMethodsAre405BadRequestIs400) {
  auto server = StartServer([] { return std::string("m 1\n"); });
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  EXPECT_EQ(Get(port, "/").status, 404);
  EXPECT_EQ(Get(port, "/metricsx").status, 404);
  EXPECT_EQ(Get(port, "/metrics/").status, 404);

  // A body the server never reads (more than it reads at once) must not turn the 405
  // into a connection reset that destroys the response before the client reads it.
  const HttpResponse post = Request(
      port, "POST /metrics HTTP/1.1\r\nContent-Length: 20000\r\n\r\n" + std::string(20000, 'b'));
  ASSERT_EQ(post.error, "");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers.at("allow"), "GET");
  EXPECT_EQ(Request(port, "DELETE /healthz HTTP/1.1\r\n\r\n").status, 405);
  EXPECT_EQ(Request(port, "GET\r\n\r\n").status, 400);
  EXPECT_EQ(Request(port, "GET /metrics SMTP/1.0\r\n\r\n").status, 400);
  // Still serving after all that.
  EXPECT_EQ(Get(port, "/metrics").body, "m 1\n");
}

TEST(MetricsHttpServerTest, RenderExceptionIs500AndTheServerGoesOn) {
  std::atomic<bool> fail{true};
  auto server = StartServer([&]() -> std::string {
    if (fail) throw std::runtime_error("coordinator state unavailable");
    return "m 1\n";
  });
  ASSERT_NE(server, nullptr);
  const HttpResponse r = Get(server->port(), "/metrics");
  EXPECT_EQ(r.status, 500);
  EXPECT_THAT(r.body, HasSubstr("coordinator state unavailable"));
  fail = false;
  EXPECT_EQ(Get(server->port(), "/metrics").status, 200);
}

// A client that connects and never sends (a port scanner, a stuck proxy) must not hold
// up a real scrape, and is itself dropped after 2 s.
TEST(MetricsHttpServerTest, SilentClientsDoNotBlockTheNextOne) {
  auto server = StartServer([] { return std::string("m 1\n"); });
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  Client silent(port, /*timeout_s=*/10);
  ASSERT_TRUE(silent.connected());
  Client half(port, /*timeout_s=*/10);
  ASSERT_TRUE(half.connected());
  ASSERT_TRUE(half.Send("GET /metr"));  // and then nothing more

  // A timeout of 3 s: the contract allows a silent client to delay others by 2 s at most.
  const HttpResponse r = Get(port, "/metrics", /*timeout_s=*/3);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "m 1\n");

  for (Client* c : {&silent, &half}) {
    std::string error;
    EXPECT_EQ(c->ReadAll(&error), "") << "a request that never completed gets no response";
    EXPECT_EQ(error, "") << "the server closes the connection (within 2 s, here 10 s allowed)";
  }
}

// More silent clients than the server has connection slots: the next scrape waits at
// most until the first of them times out.
TEST(MetricsHttpServerTest, ManySilentClientsStillLetAScrapeThrough) {
  auto server = StartServer([] { return std::string("m 1\n"); });
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<Client>> silent;
  for (int i = 0; i < 80; ++i) {
    silent.push_back(std::make_unique<Client>(server->port(), 10));
    ASSERT_TRUE(silent.back()->connected());
  }
  const HttpResponse r = Get(server->port(), "/metrics", /*timeout_s=*/6);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
}

TEST(MetricsHttpServerTest, RequestsAbove8KiBAreDroppedBelowAreServed) {
  auto server = StartServer([] { return std::string("m 1\n"); });
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  const std::string start = "GET /metrics HTTP/1.1\r\nX-Pad: ";
  {
    const HttpResponse r = Request(port, start + std::string(7000, 'a') + "\r\n\r\n");
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(r.status, 200);
  }
  {
    Client c(port, 5);
    ASSERT_TRUE(c.connected());
    // The server may reset the connection before all of it is sent.
    c.Send(start + std::string(9000, 'a') + "\r\n\r\n");
    std::string error;
    const std::string raw = c.ReadAll(&error);
    EXPECT_EQ(raw, "") << "an oversized request gets no response";
    EXPECT_NE(error, "timeout") << "it is dropped at once, not left to time out";
  }
  {
    // The same, arriving in two pieces, so that the end of the headers comes in the read
    // that crosses 8 KiB (the pause only makes that split likely; the outcome is the
    // same either way).
    Client c(port, 5);
    ASSERT_TRUE(c.connected());
    const std::string request = start + std::string(8500, 'a') + "\r\n\r\n";
    ASSERT_TRUE(c.Send(request.substr(0, 6000)));
    ::usleep(50'000);
    c.Send(request.substr(6000));
    std::string error;
    EXPECT_EQ(c.ReadAll(&error), "") << "an oversized request gets no response";
    EXPECT_NE(error, "timeout");
  }
  EXPECT_EQ(Get(port, "/metrics").status, 200);
}

TEST(MetricsHttpServerTest, StartErrorsNameTheAddress) {
  auto first = StartServer([] { return std::string(); });
  ASSERT_NE(first, nullptr);
  const auto busy = MetricsHttpServer::Start("127.0.0.1", first->port(), [] { return ""; });
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kUnavailable) << busy.status();
  EXPECT_THAT(std::string(busy.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", first->port())));

  const auto bad_port = MetricsHttpServer::Start("127.0.0.1", 70000, [] { return ""; });
  EXPECT_EQ(bad_port.status().code(), absl::StatusCode::kInvalidArgument);
  const auto bad_host = MetricsHttpServer::Start("no-such-host.invalid", 0, [] { return ""; });
  EXPECT_EQ(bad_host.status().code(), absl::StatusCode::kInvalidArgument) << bad_host.status();
  EXPECT_THAT(std::string(bad_host.status().message()), HasSubstr("no-such-host.invalid"));
  const auto no_render = MetricsHttpServer::Start("127.0.0.1", 0, nullptr);
  EXPECT_EQ(no_render.status().code(), absl::StatusCode::kInvalidArgument);
}

// Destroying the server with a client connected mid-request returns (the thread stops)
// and closes the client's connection and the listening port.
TEST(MetricsHttpServerTest, DestructorStopsWithClientsConnected) {
  auto server = StartServer([] { return std::string(); });
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  Client idle(port, 5);
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(idle.Send("GET /"));
  EXPECT_EQ(Get(port, "/healthz").body, "ok");  // the idle one is accepted by now
  server.reset();
  std::string error;
  EXPECT_EQ(idle.ReadAll(&error), "");
  EXPECT_NE(error, "timeout") << "closed by the server, not left hanging";
  Client late(port, 5);
  EXPECT_FALSE(late.connected()) << "nothing listens on the port any more";
}

}  // namespace
}  // namespace colossus::launcher
