// Helpers for the in-process coordinator tests: a temporary run directory, a server with
// test-friendly options, clients over the generated stubs, and a raw HTTP GET.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "colossus/coordinator/v1/coordinator.grpc.pb.h"
#include "colossus/launcher/coordinator.h"
#include "gtest/gtest.h"

namespace colossus::launcher::testing {

namespace v1 = ::colossus::coordinator::v1;

inline constexpr char kToken[] = "s3cret-token";
inline constexpr char kJob[] = "job-under-test";

// A fresh directory, removed with its contents at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "colossus_coord_XXXXXX").string();
    char* made = mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline CoordinatorOptions TestOptions(const std::string& run_dir, int min_nodes, int max_nodes) {
  CoordinatorOptions o;
  o.job_id = kJob;
  o.run_dir = run_dir;
  o.token = kToken;
  o.min_nodes = min_nodes;
  o.max_nodes = max_nodes;
  o.cq_threads = 2;
  o.tick_interval = absl::Milliseconds(10);
  o.log = [](const std::string&) {};
  return o;
}

inline std::unique_ptr<v1::Coordinator::Stub> Connect(int port) {
  // A channel of its own per client: separate connections, as separate agents would have.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  static int unique = 0;
  args.SetInt("colossus.test.unique", ++unique);
  return v1::Coordinator::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args));
}

// A client context with the token (or another one) and a deadline.
inline std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = kToken,
                                                absl::Duration deadline = absl::Seconds(20)) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) ctx->AddMetadata("x-colossus-token", token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(deadline)));
  return ctx;
}

inline v1::RequestHeader Header(int64_t generation = 0, const std::string& job = kJob) {
  v1::RequestHeader h;
  h.set_job_id(job);
  h.set_generation(generation);
  return h;
}

inline v1::JoinRequest JoinRequest(const std::string& node, int lws, int64_t generation = 0) {
  v1::JoinRequest r;
  *r.mutable_header() = Header(generation);
  r.set_node_id(node);
  r.set_address(node + ".local:29500");
  r.set_local_world_size(lws);
  r.set_incarnation(node + "-inc");
  return r;
}

// Body of GET path from 127.0.0.1:port (headers included), or "" on failure.
inline std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

// The value of the sample `name` (with its labels, as printed) on /metrics, or -1.
inline double MetricValue(int port, const std::string& name) {
  std::string body = HttpGet(port, "/metrics");
  std::string needle = "\n" + name + " ";
  size_t at = body.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtod(body.c_str() + at + needle.size(), nullptr);
}

// Polls /metrics until `name` reads `value` (up to 20 s); returns whether it did.
inline bool AwaitMetric(int port, const std::string& name, double value) {
  for (int i = 0; i < 2000; ++i) {
    if (MetricValue(port, name) == value) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

}  // namespace colossus::launcher::testing
