// TcpStore failure behaviour: dying clients, garbage on the wire, a server that goes
// away, and a server that is not there yet.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "colossus/comm/tcp_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/socket.h"
#include "store/tcp_store_protocol.h"

namespace colossus::comm {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<TcpStoreServer> StartServer() {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

std::unique_ptr<TcpStore> Client(const TcpStoreServer& server, TcpStoreOptions options = {}) {
  auto client = TcpStore::Connect("127.0.0.1", server.port(), options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

bool WaitForConnections(const TcpStoreServer& server, int n) {
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (absl::Now() < end) {
    if (server.num_connections() == n) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

// A child process that connects, parks a Wait on the server and is SIGKILLed.
TEST(TcpStoreTest, AClientKilledInAWaitCostsOnlyItsConnection) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  auto survivor = Client(*server);
  ASSERT_TRUE(WaitForConnections(*server, 1));
  // The child makes no allocation (this process has the server's thread; a fork can
  // inherit an allocator lock): frames are encoded here, the child only does syscalls.
  namespace ts = internal::tcp_store;
  const std::string set_frame = ts::Writer().U8(ts::kSet).Bytes("child/was-here").Bytes("1").Finish();
  const std::string wait_frame =
      ts::Writer().U8(ts::kWait).U64(60000).U64(1).Bytes("never").Finish();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) _exit(2);
    char reply[64];
    if (write(fd, set_frame.data(), set_frame.size()) != static_cast<ssize_t>(set_frame.size())) _exit(2);
    if (read(fd, reply, sizeof(reply)) <= 0) _exit(2);
    if (write(fd, wait_frame.data(), wait_frame.size()) != static_cast<ssize_t>(wait_frame.size())) _exit(2);
    for (;;) pause();  // parked in the Wait until killed
  }
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(survivor->Wait({"child/was-here"}, absl::Seconds(10)).ok());
  absl::SleepFor(absl::Milliseconds(50));  // let the child park its Wait
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_TRUE(WaitForConnections(*server, 1)) << server->num_connections();
  // The server still serves, including a write to the key the dead client awaited.
  EXPECT_TRUE(survivor->Set("never", "now").ok());
  EXPECT_EQ(*survivor->Get("child/was-here"), "1");
}

TEST(TcpStoreTest, ATruncatedOrOversizedFrameDropsOnlyThatClient) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  auto good = Client(*server);
  ASSERT_TRUE(good->Set("k", "v").ok());
  {
    auto raw = internal::ConnectTcp("127.0.0.1", server->port(), absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(raw.ok());
    const char half_frame[] = {20, 0, 0, 0, 1, 3};  // promises 20 bytes, sends 2
    ASSERT_TRUE(internal::SendAll(raw->get(), half_frame, sizeof(half_frame),
                                  absl::Now() + absl::Seconds(1), "server").ok());
  }  // closed mid-frame
  {
    auto raw = internal::ConnectTcp("127.0.0.1", server->port(), absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(raw.ok());
    const unsigned char huge[] = {0xff, 0xff, 0xff, 0x7f, 1};
    ASSERT_TRUE(internal::SendAll(raw->get(), huge, sizeof(huge), absl::Now() + absl::Seconds(1),
                                  "server").ok());
    char byte;
    // The server hangs up on a frame it will not buffer.
    EXPECT_EQ(internal::RecvAll(raw->get(), &byte, 1, absl::Now() + absl::Seconds(5), "server")
                  .code(),
              absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(*good->Get("k"), "v");
  EXPECT_TRUE(WaitForConnections(*server, 1));
}

TEST(TcpStoreTest, ServerShutdownFailsPendingAndLaterCallsWithUnavailable) {
  auto server = StartServer();
  ASSERT_TRUE(server);
  TcpStoreOptions options;
  options.connect_timeout = absl::Milliseconds(300);
  auto client = Client(*server, options);
  ASSERT_TRUE(client->Set("k", "v").ok());
  absl::Status waited;
  std::thread waiter([&] { waited = client->Wait({"never"}, absl::Seconds(30)); });
  absl::SleepFor(absl::Milliseconds(100));
  const absl::Time stop = absl::Now();
  server.reset();
  waiter.join();
  EXPECT_LT(absl::Now() - stop, absl::Seconds(5));
  EXPECT_EQ(waited.code(), absl::StatusCode::kUnavailable) << waited;
  absl::StatusOr<std::string> later = client->Get("k");
  EXPECT_EQ(later.status().code(), absl::StatusCode::kUnavailable) << later.status();
  EXPECT_THAT(std::string(later.status().message()), HasSubstr("Get 'k'"));
}

TEST(TcpStoreTest, ConnectRetriesUntilTheServerStartsOrTheTimeout) {
  // Find a free port, then start the server on it only after the client began trying.
  int port = 0;
  {
    auto probe = TcpStoreServer::Start("127.0.0.1", 0);
    ASSERT_TRUE(probe.ok());
    port = (*probe)->port();
  }
  std::unique_ptr<TcpStoreServer> late;
  std::thread starter([&] {
    absl::SleepFor(absl::Milliseconds(200));
    auto s = TcpStoreServer::Start("127.0.0.1", port);
    ASSERT_TRUE(s.ok()) << s.status();
    late = *std::move(s);
  });
  auto client = TcpStore::Connect("127.0.0.1", port);
  starter.join();
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->Set("k", "v").ok());

  late.reset();
  TcpStoreOptions options;
  options.connect_timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  auto none = TcpStore::Connect("127.0.0.1", port, options);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(TcpStoreTest, LargeValuesRoundTrip) {
  auto server = StartServer();
  auto client = Client(*server);
  std::string big(16 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  ASSERT_TRUE(client->Set("big", big).ok());
  EXPECT_EQ(*client->Get("big"), big);
}

TEST(TcpStoreTest, ManyClientsWaitOnOneKey) {
  auto server = StartServer();
  constexpr int kClients = 32;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      auto c = TcpStore::Connect("127.0.0.1", server->port());
      if (c.ok() && (*c)->Wait({"go"}, absl::Seconds(20)).ok()) ++ok;
    });
  }
  absl::SleepFor(absl::Milliseconds(100));
  auto setter = Client(*server);
  ASSERT_TRUE(setter->Set("go", "1").ok());
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, kClients);
}

}  // namespace
}  // namespace colossus::comm
