// The coordinator across its own restart (a new server object on the same run directory),
// with a torn journal tail, over TLS, and its /metrics.
#include <cstdlib>
#include <fstream>
#include <thread>

#include "coordinator_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::HasSubstr;
using namespace testing;  // NOLINT: the helpers of coordinator_test_util.h

v1::ShardReport Shard(int64_t generation, int64_t step, int32_t rank, int32_t num_shards) {
  v1::ShardReport r;
  *r.mutable_header() = Header(generation);
  r.set_step(step);
  r.set_rank(rank);
  r.set_num_shards(num_shards);
  r.set_directory(absl::StrCat("/ckpt/step-", step));
  r.set_path(absl::StrCat("/ckpt/step-", step, "/rank-", rank, ".bin"));
  r.set_bytes(4096);
  r.set_checksum("00000000deadbeef");
  return r;
}

TEST(CoordinatorRestart, NewServerOnTheSameRunDirKeepsCheckpointAndGeneration) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 1, 1);
  o.node_timeout = absl::Seconds(20);
  {
    auto server = CoordinatorServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = Connect((*server)->port());
    v1::JoinResponse join;
    ASSERT_TRUE(stub->Join(Ctx().get(), JoinRequest("a", 2), &join).ok());
    v1::ShardAck ack;
    ASSERT_TRUE(stub->ReportShard(Ctx().get(), Shard(1, 10, 0, 2), &ack).ok());
    ASSERT_TRUE(stub->ReportShard(Ctx().get(), Shard(1, 10, 1, 2), &ack).ok());
    ASSERT_TRUE(ack.committed());
    // Step 20: one shard of two, then the coordinator goes away.
    ASSERT_TRUE(stub->ReportShard(Ctx().get(), Shard(1, 20, 0, 2), &ack).ok());
    EXPECT_FALSE(ack.committed());
    EXPECT_EQ(ack.latest().step(), 10);
  }
  auto server = CoordinatorServer::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->replay_summary(), HasSubstr("generation 1 RUNNING"));
  EXPECT_EQ((*server)->generation(), 1);
  auto stub = Connect((*server)->port());
  v1::GetLatestCheckpointRequest latest_request;
  *latest_request.mutable_header() = Header();
  v1::CheckpointRef latest;
  ASSERT_TRUE(stub->GetLatestCheckpoint(Ctx().get(), latest_request, &latest).ok());
  EXPECT_EQ(latest.step(), 10);
  EXPECT_EQ(latest.num_shards(), 2);

  // The agent reconnects its stream for generation 1: re-adopted, no restart.
  auto ctx = Ctx();
  auto stream = stub->Health(ctx.get());
  v1::NodeHealth first;
  *first.mutable_header() = Header(1);
  first.set_node_id("a");
  ASSERT_TRUE(stream->Write(first));
  // The last shard of step 20 arrives and commits.
  v1::ShardAck ack;
  ASSERT_TRUE(stub->ReportShard(Ctx().get(), Shard(1, 20, 1, 2), &ack).ok());
  EXPECT_TRUE(ack.committed());
  EXPECT_EQ(ack.latest().step(), 20);
  EXPECT_EQ((*server)->generation(), 1);
  EXPECT_EQ((*server)->Status().restarts(), 0);
  stream->WritesDone();
  ctx->TryCancel();
}

TEST(CoordinatorRestart, TornJournalTailIsCutWithAWarning) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 1, 1);
  {
    auto server = CoordinatorServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = Connect((*server)->port());
    v1::JoinResponse join;
    ASSERT_TRUE(stub->Join(Ctx().get(), JoinRequest("a", 1), &join).ok());
    v1::ShardAck ack;
    ASSERT_TRUE(stub->ReportShard(Ctx().get(), Shard(1, 5, 0, 1), &ack).ok());
    ASSERT_TRUE(ack.committed());
  }
  // A crash in the middle of writing a record: half a header of garbage at the end.
  {
    std::ofstream out(dir.path() + "/coordinator.journal", std::ios::binary | std::ios::app);
    out.write("CLSR\x40\x00", 6);
  }
  std::vector<std::string> logged;
  o.log = [&logged](const std::string& line) { logged.push_back(line); };
  auto server = CoordinatorServer::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->journal_warning(), HasSubstr("coordinator.journal"));
  ASSERT_FALSE(logged.empty());
  EXPECT_THAT(logged[0], HasSubstr("warning"));
  EXPECT_EQ((*server)->Status().latest_checkpoint().step(), 5);
  EXPECT_EQ((*server)->generation(), 1);
}

TEST(CoordinatorRestart, SecondCoordinatorOnALockedRunDirIsRefused) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 1, 1);
  auto first = CoordinatorServer::Start(o);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = CoordinatorServer::Start(o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CoordinatorMetrics, PrometheusTextNamesTheFigures) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 1, 1);
  o.metrics_port = 0;
  auto server = CoordinatorServer::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = Connect((*server)->port());
  v1::JoinResponse join;
  ASSERT_TRUE(stub->Join(Ctx().get(), JoinRequest("a", 4), &join).ok());
  v1::StoreSetRequest set;
  *set.mutable_header() = Header(1);
  set.set_key("k");
  set.set_value("v");
  v1::StoreSetResponse set_response;
  ASSERT_TRUE(stub->StoreSet(Ctx().get(), set, &set_response).ok());
  v1::StoreSetResponse refused;
  EXPECT_FALSE(stub->StoreSet(Ctx("wrong").get(), set, &refused).ok());
  int port = (*server)->metrics_port();
  ASSERT_GT(port, 0);
  std::string body = HttpGet(port, "/metrics");
  EXPECT_THAT(body, HasSubstr("200 OK"));
  EXPECT_EQ(MetricValue(port, "colossus_coordinator_generation"), 1);
  EXPECT_EQ(MetricValue(port, "colossus_coordinator_nodes_joined"), 1);
  EXPECT_EQ(MetricValue(port, "colossus_coordinator_world_size"), 4);
  EXPECT_EQ(MetricValue(port, "colossus_coordinator_store_operations_total{op=\"set\"}"), 1);
  EXPECT_EQ(MetricValue(port, "colossus_coordinator_unauthenticated_total"), 1);
  EXPECT_EQ(MetricValue(port, "colossus_coordinator_restarts_total"), 0);
  EXPECT_GE(MetricValue(port, "colossus_coordinator_max_heartbeat_lag_seconds"), 0);
  EXPECT_THAT(body, HasSubstr("colossus_coordinator_job_phase{phase=\"JOB_PHASE_RUNNING\"} 1"));
}

// Self-signed certificate for 127.0.0.1 made with the openssl CLI, or "" when it is
// missing.
std::string MakeCertificate(const std::string& dir, const std::string& name) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) return "";
  std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext "
      "subjectAltName=IP:127.0.0.1,DNS:localhost -keyout ", dir, "/", name, ".key -out ", dir,
      "/", name, ".pem >/dev/null 2>&1");
  if (std::system(cmd.c_str()) != 0) return "";
  return absl::StrCat(dir, "/", name);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

grpc::Status StatusCall(std::shared_ptr<grpc::ChannelCredentials> creds, int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stub = v1::Coordinator::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), creds, args));
  v1::JobStatusRequest request;
  *request.mutable_header() = Header();
  v1::JobStatus status;
  return stub->GetJobStatus(Ctx(kToken, absl::Seconds(5)).get(), request, &status);
}

TEST(CoordinatorTls, ServerCertificateAndRequiredClientCertificates) {
  TempDir dir;
  std::string server_cert = MakeCertificate(dir.path(), "server");
  std::string client_cert = MakeCertificate(dir.path(), "client");
  if (server_cert.empty() || client_cert.empty()) {
    GTEST_SKIP() << "the openssl CLI is not installed (or failed): cannot make a test certificate";
  }
  CoordinatorOptions o = TestOptions(dir.path(), 1, 1);
  o.tls_cert_path = server_cert + ".pem";
  o.tls_key_path = server_cert + ".key";
  {
    auto server = CoordinatorServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = Slurp(server_cert + ".pem");
    grpc::Status s = StatusCall(grpc::SslCredentials(ssl), (*server)->port());
    EXPECT_TRUE(s.ok()) << s.error_message();
    s = StatusCall(grpc::InsecureChannelCredentials(), (*server)->port());
    EXPECT_FALSE(s.ok()) << "a plaintext client must not get through a TLS port";
    EXPECT_EQ((*server)->Status().phase(), v1::JOB_PHASE_WAITING);
  }
  // With a client CA, a client without a certificate is refused; one with it gets in.
  o.tls_client_ca_path = client_cert + ".pem";
  auto server = CoordinatorServer::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  grpc::SslCredentialsOptions anonymous;
  anonymous.pem_root_certs = Slurp(server_cert + ".pem");
  EXPECT_FALSE(StatusCall(grpc::SslCredentials(anonymous), (*server)->port()).ok());
  grpc::SslCredentialsOptions mutual = anonymous;
  mutual.pem_cert_chain = Slurp(client_cert + ".pem");
  mutual.pem_private_key = Slurp(client_cert + ".key");
  grpc::Status s = StatusCall(grpc::SslCredentials(mutual), (*server)->port());
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST(CoordinatorOptionsTest, BadOptionsNameTheOption) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 3, 2);
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server = CoordinatorServer::Start(o);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("max_nodes"));
  o = TestOptions(dir.path(), 1, 1);
  o.token.clear();
  EXPECT_THAT(CoordinatorServer::Start(o).status().message(), HasSubstr("token"));
  o = TestOptions(dir.path(), 1, 1);
  o.tls_cert_path = "/nonexistent/cert.pem";
  o.tls_key_path = "/nonexistent/key.pem";
  server = CoordinatorServer::Start(o);
  EXPECT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("/nonexistent/cert.pem"));
}

}  // namespace
}  // namespace colossus::launcher
