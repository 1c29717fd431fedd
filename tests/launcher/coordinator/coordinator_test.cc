// The coordinator over real gRPC (in-process server, generated stubs, many client
// threads): rendezvous, bad input refused without effect, held StoreWait, the Health
// stream's commands and first-message cut-off, WatchEvents, StopJob and Shutdown.
#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "coordinator_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::HasSubstr;
using namespace testing;  // NOLINT: the helpers of coordinator_test_util.h

std::unique_ptr<CoordinatorServer> StartOrDie(const CoordinatorOptions& o) {
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server = CoordinatorServer::Start(o);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(CoordinatorServer, EightAgentsJoinFromSeparateConnections) {
  TempDir dir;
  auto server = StartOrDie(TestOptions(dir.path(), 8, 8));
  ASSERT_NE(server, nullptr);
  std::vector<v1::JoinResponse> responses(8);
  std::vector<grpc::Status> statuses(8);
  std::vector<std::thread> agents;
  for (int i = 0; i < 8; ++i) {
    agents.emplace_back([&, i] {
      auto stub = Connect(server->port());
      auto ctx = Ctx();
      // Node ids sort as n7, n6, ... n0 reversed from the thread order.
      statuses[i] = stub->Join(ctx.get(), JoinRequest(absl::StrCat("n", 7 - i), 1 + i % 3), &responses[i]);
    });
  }
  for (auto& t : agents) t.join();
  std::map<std::string, v1::JoinResponse> by_node;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    by_node[responses[i].assignment().node_id()] = responses[i];
  }
  int32_t rank = 0;
  int32_t node_rank = 0;
  for (const auto& [node, r] : by_node) {
    EXPECT_EQ(r.generation(), 1);
    EXPECT_EQ(r.assignment().node_rank(), node_rank++);
    EXPECT_EQ(r.assignment().first_rank(), rank);
    rank += r.assignment().local_world_size();
  }
  EXPECT_EQ(by_node.begin()->second.world_size(), rank);
  v1::JobStatus status = server->Status();
  EXPECT_EQ(status.phase(), v1::JOB_PHASE_RUNNING);
  EXPECT_EQ(status.nodes_joined(), 8);
}

TEST(CoordinatorServer, BadCallersAreRefusedAndTheJobIsUnaffected) {
  TempDir dir;
  auto server = StartOrDie(TestOptions(dir.path(), 1, 1));
  ASSERT_NE(server, nullptr);
  auto stub = Connect(server->port());
  v1::JoinResponse join;

  grpc::Status s = stub->Join(Ctx("wrong").get(), JoinRequest("a", 1), &join);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = stub->Join(Ctx("").get(), JoinRequest("a", 1), &join);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("x-colossus-token"));
  v1::StopJobRequest stop;
  *stop.mutable_header() = Header();
  v1::StopJobResponse stopped;
  s = stub->StopJob(Ctx("s3cret-tokeN").get(), stop, &stopped);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  v1::JoinRequest other_job = JoinRequest("a", 1);
  other_job.mutable_header()->set_job_id("someone-else");
  s = stub->Join(Ctx().get(), other_job, &join);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("someone-else"));

  v1::JoinRequest no_header = JoinRequest("a", 1);
  no_header.clear_header();
  s = stub->Join(Ctx().get(), no_header, &join);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("header"));
  s = stub->Join(Ctx().get(), JoinRequest("a", 0), &join);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("local_world_size"));

  // None of it touched the job.
  EXPECT_EQ(server->Status().phase(), v1::JOB_PHASE_WAITING);
  EXPECT_EQ(server->Status().nodes_joined(), 0);

  // A normal flow works afterwards.
  s = stub->Join(Ctx().get(), JoinRequest("a", 2), &join);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(join.generation(), 1);

  v1::StoreSetRequest set;
  *set.mutable_header() = Header(1);
  set.set_key(std::string(2048, 'k'));
  set.set_value("v");
  v1::StoreSetResponse set_response;
  s = stub->StoreSet(Ctx().get(), set, &set_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("2048 bytes"));
  set.set_key("nccl-id");
  set.set_value(std::string((1 << 20) + 1, 'v'));
  s = stub->StoreSet(Ctx().get(), set, &set_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  set.set_value("id");
  s = stub->StoreSet(Ctx("nope").get(), set, &set_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  v1::StoreGetRequest get;
  *get.mutable_header() = Header(1);
  get.set_key("nccl-id");
  v1::StoreGetResponse got;
  s = stub->StoreGet(Ctx().get(), get, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << "refused Sets stored nothing";
  ASSERT_TRUE(stub->StoreSet(Ctx().get(), set, &set_response).ok());
  ASSERT_TRUE(stub->StoreGet(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.value(), "id");
  EXPECT_EQ(server->Status().phase(), v1::JOB_PHASE_RUNNING);
}

TEST(CoordinatorServer, SilentHealthStreamIsCutOffAndTheServerStaysUp) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 1, 1);
  o.first_message_timeout = absl::Milliseconds(300);
  auto server = StartOrDie(o);
  ASSERT_NE(server, nullptr);
  auto stub = Connect(server->port());
  std::vector<std::thread> silent;
  std::vector<grpc::Status> statuses(4);
  for (int i = 0; i < 4; ++i) {
    silent.emplace_back([&, i] {
      auto ctx = Ctx(kToken, absl::Seconds(30));
      auto stream = stub->Health(ctx.get());
      v1::Command command;
      EXPECT_FALSE(stream->Read(&command));  // never sends: the server ends the stream
      statuses[i] = stream->Finish();
    });
  }
  for (auto& t : silent) t.join();
  for (const grpc::Status& s : statuses) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_THAT(s.error_message(), HasSubstr("no first message"));
  }
  // A stream with a wrong token is refused at once.
  {
    auto ctx = Ctx("bad");
    auto stream = stub->Health(ctx.get());
    v1::Command command;
    EXPECT_FALSE(stream->Read(&command));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  v1::JoinResponse join;
  ASSERT_TRUE(stub->Join(Ctx().get(), JoinRequest("a", 1), &join).ok());
  EXPECT_EQ(server->Status().phase(), v1::JOB_PHASE_RUNNING);
}

TEST(CoordinatorServer, HeldStoreWaitsReleasedBySetFromAnotherClient) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 1, 1);
  o.metrics_port = 0;
  auto server = StartOrDie(o);
  ASSERT_NE(server, nullptr);
  auto setter = Connect(server->port());
  v1::JoinResponse join;
  ASSERT_TRUE(setter->Join(Ctx().get(), JoinRequest("a", 8), &join).ok());

  // 256 waits on one channel through the async client API, plus one blocking thread.
  auto waiter = Connect(server->port());
  grpc::CompletionQueue cq;
  constexpr int kWaits = 256;
  struct Pending {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::StoreWaitResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::StoreWaitResponse>> reader;
  };
  std::vector<Pending> pending(kWaits);
  v1::StoreWaitRequest wait;
  *wait.mutable_header() = Header(1);
  wait.add_keys("nccl-unique-id");
  wait.set_timeout_ms(20'000);
  for (int i = 0; i < kWaits; ++i) {
    pending[i].ctx = Ctx();
    pending[i].reader = waiter->AsyncStoreWait(pending[i].ctx.get(), wait, &cq);
    pending[i].reader->Finish(&pending[i].response, &pending[i].status, &pending[i]);
  }
  v1::StoreWaitResponse blocking_response;
  grpc::Status blocking_status;
  std::thread blocking([&] {
    auto stub = Connect(server->port());
    blocking_status = stub->StoreWait(Ctx().get(), wait, &blocking_response);
  });
  // Set once every wait is held.
  ASSERT_TRUE(AwaitMetric(server->metrics_port(),
                          "colossus_coordinator_held_calls{kind=\"store_wait\"}", kWaits + 1));
  v1::StoreSetRequest set;
  *set.mutable_header() = Header(1);
  set.set_key("nccl-unique-id");
  set.set_value("the-id");
  v1::StoreSetResponse set_response;
  ASSERT_TRUE(setter->StoreSet(Ctx().get(), set, &set_response).ok());
  for (int i = 0; i < kWaits; ++i) {
    void* tag;
    bool ok;
    ASSERT_TRUE(cq.Next(&tag, &ok));
    Pending* p = static_cast<Pending*>(tag);
    ASSERT_TRUE(p->status.ok()) << p->status.error_message();
    ASSERT_EQ(p->response.values_size(), 1);
    EXPECT_EQ(p->response.values(0), "the-id");
  }
  blocking.join();
  ASSERT_TRUE(blocking_status.ok()) << blocking_status.error_message();
  EXPECT_EQ(blocking_response.values(0), "the-id");
  cq.Shutdown();

  // A wait for a key nobody sets times out naming it.
  v1::StoreWaitRequest lonely;
  *lonely.mutable_header() = Header(1);
  lonely.add_keys("gloo/rank/5");
  lonely.set_timeout_ms(200);
  v1::StoreWaitResponse nothing;
  grpc::Status s = waiter->StoreWait(Ctx().get(), lonely, &nothing);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(s.error_message(), HasSubstr("gloo/rank/5"));
}

// Opens a node's health stream for `generation` and sends its first message.
std::unique_ptr<grpc::ClientReaderWriter<v1::NodeHealth, v1::Command>> OpenHealth(
    v1::Coordinator::Stub& stub, grpc::ClientContext* ctx, const std::string& node,
    int64_t generation, int lws) {
  auto stream = stub.Health(ctx);
  v1::NodeHealth first;
  *first.mutable_header() = Header(generation);
  first.set_node_id(node);
  for (int r = 0; r < lws; ++r) {
    v1::RankHealth* h = first.add_ranks();
    h->set_local_rank(r);
    h->set_state(v1::RANK_STATE_RUNNING);
    h->set_step(0);
  }
  EXPECT_TRUE(stream->Write(first));
  return stream;
}

TEST(CoordinatorServer, FailedRankRestartsTheGroupOverHealthStreams) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 2, 2);
  o.max_restarts = 1;
  auto server = StartOrDie(o);
  ASSERT_NE(server, nullptr);
  auto a = Connect(server->port());
  auto b = Connect(server->port());
  v1::JoinResponse ja, jb;
  std::thread ta([&] { ASSERT_TRUE(a->Join(Ctx().get(), JoinRequest("a", 2), &ja).ok()); });
  ASSERT_TRUE(b->Join(Ctx().get(), JoinRequest("b", 2), &jb).ok());
  ta.join();
  ASSERT_EQ(ja.generation(), 1);

  auto ctx_a = Ctx();
  auto ctx_b = Ctx();
  auto stream_a = OpenHealth(*a, ctx_a.get(), "a", 1, 2);
  auto stream_b = OpenHealth(*b, ctx_b.get(), "b", 1, 2);
  // Both streams are open once every rank reads RUNNING.
  auto all_running = [&] {
    const v1::JobStatus status = server->Status();
    for (const v1::NodeStatus& n : status.nodes()) {
      for (const v1::RankHealth& r : n.ranks()) {
        if (r.state() != v1::RANK_STATE_RUNNING) return false;
      }
    }
    return true;
  };
  for (int i = 0; i < 2000 && !all_running(); ++i) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(all_running());
  // Rank 3 (b's local rank 1) dies of SIGSEGV.
  v1::NodeHealth fail;
  v1::RankHealth* h = fail.add_ranks();
  h->set_local_rank(1);
  h->set_state(v1::RANK_STATE_FAILED);
  h->set_step(17);
  h->set_signal(11);
  ASSERT_TRUE(stream_b->Write(fail));
  for (auto* stream : {stream_a.get(), stream_b.get()}) {
    v1::Command command;
    ASSERT_TRUE(stream->Read(&command));
    EXPECT_EQ(command.kind(), v1::Command::KIND_RESTART);
    EXPECT_EQ(command.generation(), 2);
    EXPECT_THAT(command.reason(), HasSubstr("rank 3 (node b, local rank 1) failed at step 17: killed by signal 11"));
    EXPECT_FALSE(stream->Read(&command)) << "the old generation's stream ends after RESTART";
    EXPECT_TRUE(stream->Finish().ok());
  }
  // Generation 1 is fenced; both re-join generation 2.
  v1::StoreSetRequest zombie;
  *zombie.mutable_header() = Header(1);
  zombie.set_key("k");
  zombie.set_value("v");
  v1::StoreSetResponse ignored;
  grpc::Status s = a->StoreSet(Ctx().get(), zombie, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("generation 2"));
  std::thread ta2([&] { ASSERT_TRUE(a->Join(Ctx().get(), JoinRequest("a", 2, 2), &ja).ok()); });
  ASSERT_TRUE(b->Join(Ctx().get(), JoinRequest("b", 2, 2), &jb).ok());
  ta2.join();
  EXPECT_EQ(jb.generation(), 2);
  EXPECT_EQ(jb.restarts(), 1);

  // The second failure spends the budget: EXIT(success=false) and the job FAILED.
  auto ctx_a2 = Ctx();
  auto stream_a2 = OpenHealth(*a, ctx_a2.get(), "a", 2, 2);
  v1::NodeHealth fail2;
  v1::RankHealth* h2 = fail2.add_ranks();
  h2->set_local_rank(0);
  h2->set_state(v1::RANK_STATE_FAILED);
  h2->set_exit_code(1);
  ASSERT_TRUE(stream_a2->Write(fail2));
  v1::Command exit;
  ASSERT_TRUE(stream_a2->Read(&exit));
  EXPECT_EQ(exit.kind(), v1::Command::KIND_EXIT);
  EXPECT_FALSE(exit.success());
  EXPECT_EQ(server->Wait(), v1::JOB_PHASE_FAILED);
  EXPECT_THAT(server->Status().reason(), HasSubstr("restart budget spent"));
}

TEST(CoordinatorServer, WatchEventsUntilStopJob) {
  TempDir dir;
  CoordinatorOptions o = TestOptions(dir.path(), 1, 1);
  o.metrics_port = 0;
  auto server = StartOrDie(o);
  ASSERT_NE(server, nullptr);
  auto stub = Connect(server->port());
  auto watch_ctx = Ctx();
  v1::WatchEventsRequest watch;
  *watch.mutable_header() = Header();
  auto events = stub->WatchEvents(watch_ctx.get(), watch);
  std::thread joiner([&] {
    // Events go to subscribers from the moment they subscribe: wait for the watcher.
    ASSERT_TRUE(AwaitMetric(server->metrics_port(), "colossus_coordinator_event_watchers", 1));
    v1::JoinResponse join;
    ASSERT_TRUE(stub->Join(Ctx().get(), JoinRequest("a", 1), &join).ok());
    v1::StopJobRequest stop;
    *stop.mutable_header() = Header();
    stop.set_reason("test over");
    v1::StopJobResponse stopped;
    ASSERT_TRUE(stub->StopJob(Ctx().get(), stop, &stopped).ok());
    EXPECT_EQ(stopped.status().phase(), v1::JOB_PHASE_STOPPED);
  });
  std::vector<v1::JobEvent::Kind> kinds;
  v1::JobEvent e;
  while (events->Read(&e)) kinds.push_back(e.kind());
  EXPECT_TRUE(events->Finish().ok());
  joiner.join();
  EXPECT_THAT(kinds, ::testing::ElementsAre(v1::JobEvent::KIND_NODE_JOINED,
                                            v1::JobEvent::KIND_GENERATION_FORMED,
                                            v1::JobEvent::KIND_JOB_ENDED));
  EXPECT_EQ(server->Wait(), v1::JOB_PHASE_STOPPED);
}

TEST(CoordinatorServer, ShutdownReleasesHeldJoinsWithUnavailable) {
  TempDir dir;
  auto server = StartOrDie(TestOptions(dir.path(), 2, 2));
  ASSERT_NE(server, nullptr);
  auto stub = Connect(server->port());
  grpc::Status status;
  std::thread held([&] {
    v1::JoinResponse join;
    status = stub->Join(Ctx().get(), JoinRequest("a", 1), &join);
  });
  while (server->Status().nodes_joined() < 1) absl::SleepFor(absl::Milliseconds(5));
  server->Shutdown();
  held.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(CoordinatorServer, CancelledJoinDoesNotCount) {
  TempDir dir;
  auto server = StartOrDie(TestOptions(dir.path(), 2, 2));
  ASSERT_NE(server, nullptr);
  {
    auto stub = Connect(server->port());
    v1::JoinResponse join;
    grpc::Status s = stub->Join(Ctx(kToken, absl::Milliseconds(300)).get(), JoinRequest("gone", 1), &join);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  for (int i = 0; i < 200 && server->Status().nodes_joined() > 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(server->Status().nodes_joined(), 0) << "the client gave up: its Join no longer counts";
}

}  // namespace
}  // namespace colossus::launcher
