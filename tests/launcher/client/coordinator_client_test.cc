// CoordinatorClient against the in-test fake: headers and token, status mapping,
// retries, deadlines, held calls, connections, health streams and events.
#include "colossus/launcher/coordinator_client.h"

#include <atomic>
#include <thread>
#include <vector>

#include "fake_coordinator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::FakeCoordinator;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

CoordinatorClientOptions Options(const std::string& target, const std::string& token = "secret") {
  CoordinatorClientOptions o;
  o.channel.target = target;
  o.token = token;
  o.job_id = "job1";
  o.call_timeout = absl::Seconds(5);
  o.retry.initial_backoff = absl::Milliseconds(10);
  o.retry.max_backoff = absl::Milliseconds(50);
  o.retry.max_elapsed = absl::Seconds(5);
  return o;
}

std::unique_ptr<CoordinatorClient> Client(const CoordinatorClientOptions& o) {
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> c = CoordinatorClient::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

v1::JoinRequest JoinOf(const std::string& node, int gpus = 8) {
  v1::JoinRequest r;
  r.set_node_id(node);
  r.set_address(node + ".example");
  r.set_local_world_size(gpus);
  r.set_incarnation("inc-" + node);
  r.set_timeout_ms(10000);
  return r;
}

TEST(CoordinatorClientTest, EveryCallCarriesTokenJobAndCurrentGeneration) {
  FakeCoordinator fake("job1", "secret");
  auto client = Client(Options(fake.target()));
  ASSERT_TRUE(client->StoreSet("k", "v").ok());
  EXPECT_EQ(fake.last_generation(), 0);
  absl::StatusOr<v1::JoinResponse> joined = client->Join(JoinOf("n0"));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(client->generation(), 1);  // Join moved the client to the formed generation
  ASSERT_TRUE(client->StoreGet("k").ok());
  EXPECT_EQ(fake.last_generation(), 1);
  client->set_generation(7);
  ASSERT_TRUE(client->GetJobStatus().ok());
  EXPECT_EQ(fake.last_generation(), 7);
  for (const std::string& token : fake.tokens_seen()) EXPECT_EQ(token, "secret");
  EXPECT_EQ(fake.tokens_seen().size(), 4u);
}

TEST(CoordinatorClientTest, ErrorsNameCoordinatorRpcKeyAndServerMessage) {
  FakeCoordinator fake("job1", "secret");
  auto client = Client(Options(fake.target()));
  absl::StatusOr<std::string> absent = client->StoreGet("nccl/id");
  ASSERT_EQ(absent.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(absent.status()), HasSubstr("coordinator " + fake.target()));
  EXPECT_THAT(Msg(absent.status()), HasSubstr("StoreGet 'nccl/id'"));
  EXPECT_THAT(Msg(absent.status()), HasSubstr("fake: no key"));

  auto intruder = Client(Options(fake.target(), "wrong"));
  absl::Status refused = intruder->StoreSet("k", "v");
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(Msg(refused), HasSubstr("fake: wrong token"));
  EXPECT_EQ(client->StoreGet("k").status().code(), absl::StatusCode::kNotFound);  // no effect

  CoordinatorClientOptions other_job = Options(fake.target());
  other_job.job_id = "job2";
  absl::Status unknown = Client(other_job)->GetJobStatus().status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(unknown), HasSubstr("job2"));
}

TEST(CoordinatorClientTest, IdempotentCallsRetryUnavailableOthersDoNot) {
  FakeCoordinator fake("job1", "secret");
  auto client = Client(Options(fake.target()));
  ASSERT_TRUE(client->StoreSet("k", "v").ok());
  fake.FailNext(3);
  absl::StatusOr<std::string> v = client->StoreGet("k");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "v");
  EXPECT_EQ(fake.calls("StoreGet"), 4);

  // An Add is not repeated: a lost reply would count twice.
  fake.FailNext(1);
  absl::StatusOr<int64_t> added = client->StoreAdd("n", 1);
  EXPECT_EQ(added.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Msg(added.status()), HasSubstr("unreachable after 1 attempt"));
  EXPECT_THAT(Msg(added.status()), HasSubstr("fake: scripted"));
  EXPECT_EQ(fake.calls("StoreAdd"), 1);
  EXPECT_EQ(*client->StoreAdd("n", 1), 1);  // the refused Add left nothing behind
}

TEST(CoordinatorClientTest, ACoordinatorThatIsDownReadsUnreachableAfterNAttempts) {
  const int port = testing::UnusedPort();
  CoordinatorClientOptions o = Options("127.0.0.1:" + std::to_string(port));
  o.retry.max_elapsed = absl::Milliseconds(300);
  auto client = Client(o);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::JobStatus> st = client->GetJobStatus();
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  ASSERT_EQ(st.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Msg(st.status()),
              HasSubstr("coordinator 127.0.0.1:" + std::to_string(port) + " unreachable after "));
  EXPECT_THAT(Msg(st.status()), HasSubstr("GetJobStatus"));
  EXPECT_THAT(Msg(st.status()), Not(HasSubstr("after 1 attempt")));
}

TEST(CoordinatorClientTest, HeldJoinsOfSeveralNodesGetContiguousRanksInNodeIdOrder) {
  FakeCoordinator fake("job1", "secret", /*nodes=*/3);
  const std::vector<std::string> nodes = {"node-c", "node-a", "node-b"};
  std::vector<absl::StatusOr<v1::JoinResponse>> got(nodes.size(), absl::UnknownError(""));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < nodes.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = Client(Options(fake.target()))->Join(JoinOf(nodes[i], 4)); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < nodes.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    EXPECT_EQ(got[i]->world_size(), 12);
    EXPECT_EQ(got[i]->master_address(), "node-a.example");
  }
  EXPECT_EQ(got[1]->assignment().first_rank(), 0);  // node-a
  EXPECT_EQ(got[2]->assignment().first_rank(), 4);  // node-b
  EXPECT_EQ(got[0]->assignment().first_rank(), 8);  // node-c
  EXPECT_EQ(got[0]->assignment().node_rank(), 2);
}

TEST(CoordinatorClientTest, JoinWaitsForACoordinatorThatStartsLater) {
  const int port = testing::UnusedPort();
  auto client = Client(Options("127.0.0.1:" + std::to_string(port)));
  absl::StatusOr<v1::JoinResponse> joined = absl::UnknownError("");
  std::thread agent([&] { joined = client->Join(JoinOf("n0")); });
  absl::SleepFor(absl::Milliseconds(300));
  FakeCoordinator fake("job1", "secret", 1, port);
  agent.join();
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(fake.calls("Join"), 1);
}

TEST(CoordinatorClientTest, AJoinIsRetriedOnlyWithAnIncarnation) {
  FakeCoordinator fake("job1", "secret");
  auto client = Client(Options(fake.target()));
  fake.FailNext(2);
  ASSERT_TRUE(client->Join(JoinOf("n0")).ok());  // carries an incarnation: retried
  EXPECT_EQ(fake.calls("Join"), 3);

  FakeCoordinator other("job1", "secret");
  auto second = Client(Options(other.target()));
  other.FailNext(1);
  v1::JoinRequest bare = JoinOf("n1");
  bare.clear_incarnation();
  absl::StatusOr<v1::JoinResponse> joined = second->Join(bare);
  EXPECT_EQ(joined.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(other.calls("Join"), 1);
}

TEST(CoordinatorClientTest, AJoinThatNeverConnectsReadsUnreachable) {
  CoordinatorClientOptions o = Options("127.0.0.1:" + std::to_string(testing::UnusedPort()));
  o.call_timeout = absl::Milliseconds(200);
  v1::JoinRequest req = JoinOf("n0");
  req.set_timeout_ms(200);
  absl::StatusOr<v1::JoinResponse> joined = Client(o)->Join(req);
  EXPECT_EQ(joined.status().code(), absl::StatusCode::kUnavailable) << joined.status();
  EXPECT_THAT(Msg(joined.status()), HasSubstr("unreachable"));
  EXPECT_THAT(Msg(joined.status()), HasSubstr("Join of node 'n0'"));
}

TEST(CoordinatorClientTest, HeldCallsGetTheirTimeoutPlusGraceThenDeadlineExceeded) {
  FakeCoordinator fake("job1", "secret");
  fake.HoldJoinsForever();
  CoordinatorClientOptions o = Options(fake.target());
  o.call_timeout = absl::Milliseconds(300);
  auto client = Client(o);
  v1::JoinRequest req = JoinOf("n0");
  req.set_timeout_ms(200);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::JoinResponse> joined = client->Join(req);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(joined.status().code(), absl::StatusCode::kDeadlineExceeded) << joined.status();
  EXPECT_THAT(Msg(joined.status()), HasSubstr("no answer within"));
  EXPECT_GE(took, absl::Milliseconds(450));  // the hold (200 ms) plus the grace (300 ms)
  EXPECT_LT(took, absl::Seconds(3));
  fake.Stop();
}

TEST(CoordinatorClientTest, StoreWaitIsReleasedBySetFromAnotherClientAndTimesOutNamingKeys) {
  FakeCoordinator fake("job1", "secret");
  auto waiter = Client(Options(fake.target()));
  auto setter = Client(Options(fake.target()));
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(100));
    ASSERT_TRUE(setter->StoreSet("nccl/id", "abc").ok());
  });
  absl::StatusOr<std::vector<std::string>> values =
      waiter->StoreWait({"nccl/id"}, absl::Seconds(10));
  t.join();
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(*values, std::vector<std::string>{"abc"});

  // The hold is enforced by the client, not sent as a gRPC deadline (a timer per held
  // call at the coordinator); short calls carry one.
  EXPECT_FALSE(fake.had_deadline("StoreWait"));
  EXPECT_TRUE(fake.had_deadline("StoreSet"));

  absl::StatusOr<std::vector<std::string>> late =
      waiter->StoreWait({"nccl/id", "rank/7"}, absl::Milliseconds(100));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(Msg(late.status()), HasSubstr("'rank/7'"));
  EXPECT_THAT(Msg(late.status()), Not(HasSubstr("'nccl/id'")));
}

TEST(CoordinatorClientTest, ShutdownCancelsAHeldWaitAndRefusesLaterCalls) {
  FakeCoordinator fake("job1", "secret");
  auto client = Client(Options(fake.target()));
  absl::Status waited;
  std::thread t([&] { waited = client->StoreWait({"never"}, absl::Seconds(30)).status(); });
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time start = absl::Now();
  client->Shutdown();
  t.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(waited.code(), absl::StatusCode::kCancelled) << waited;
  EXPECT_EQ(client->StoreGet("k").status().code(), absl::StatusCode::kCancelled);
}

TEST(CoordinatorClientTest, OwnConnectionPerClientOrOneSharedChannel) {
  FakeCoordinator fake("job1", "secret");
  {
    auto a = Client(Options(fake.target()));
    auto b = Client(Options(fake.target()));
    ASSERT_TRUE(a->StoreSet("a", "1").ok());
    ASSERT_TRUE(b->StoreSet("b", "1").ok());
  }
  EXPECT_EQ(fake.peers().size(), 2u);  // two TCP connections, as two hosts would have

  CoordinatorClientOptions o = Options(fake.target());
  o.channel.own_connection = false;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeCoordinatorChannel(o.channel);
  ASSERT_TRUE(channel.ok());
  auto c = CoordinatorClient::Create(o, *channel);
  auto d = CoordinatorClient::Create(o, *channel);
  ASSERT_TRUE(c->StoreSet("c", "1").ok());
  ASSERT_TRUE(d->StoreSet("d", "1").ok());
  EXPECT_EQ(fake.peers().size(), 3u);  // one more connection, shared by c and d
}

TEST(CoordinatorClientTest, TlsFilesThatCannotBeReadAreNamed) {
  CoordinatorClientOptions o = Options("127.0.0.1:1");
  o.channel.tls.ca_cert_file = "/nonexistent/ca.pem";
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> c = CoordinatorClient::Create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(Msg(c.status()), HasSubstr("/nonexistent/ca.pem"));
  o.channel.tls.ca_cert_file = "";
  o.channel.tls.client_cert_file = "/tmp/cert.pem";
  EXPECT_EQ(CoordinatorClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- health streams and events ----------------------------------------------------------

v1::NodeHealth Beat(int64_t step) {
  v1::NodeHealth beat;
  for (int r = 0; r < 8; ++r) {
    v1::RankHealth* rank = beat.add_ranks();
    rank->set_local_rank(r);
    rank->set_state(v1::RANK_STATE_RUNNING);
    rank->set_step(step);
  }
  return beat;
}

TEST(HealthStreamTest, BeatsArriveWithHeaderCommandsReachTheCallbackCloseIsClean) {
  FakeCoordinator fake("job1", "secret");
  auto client = Client(Options(fake.target()));
  std::mutex mu;
  std::vector<v1::Command> commands;
  absl::Status ended = absl::UnknownError("not ended");
  absl::StatusOr<std::unique_ptr<HealthStream>> hs = client->OpenHealthStream(
      "node-3", 5, Beat(-1),
      [&](const v1::Command& c) {
        std::lock_guard<std::mutex> lock(mu);
        commands.push_back(c);
      },
      [&](const absl::Status& s) { ended = s; });
  ASSERT_TRUE(hs.ok()) << hs.status();
  for (int step = 0; step < 3; ++step) ASSERT_TRUE((*hs)->Send(Beat(step)).ok());
  while (fake.open_health_streams() < 1) absl::SleepFor(absl::Milliseconds(5));
  v1::Command stop;
  stop.set_kind(v1::Command::KIND_STOP_WORKERS);
  stop.set_generation(6);
  fake.PushCommand(stop);
  for (int i = 0; i < 400; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!commands.empty()) break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE((*hs)->Close().ok());
  EXPECT_TRUE(ended.ok()) << ended;
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].kind(), v1::Command::KIND_STOP_WORKERS);
  EXPECT_EQ(commands[0].generation(), 6);
  const std::vector<v1::NodeHealth> beats = fake.beats();
  ASSERT_EQ(beats.size(), 4u);
  for (const v1::NodeHealth& b : beats) {
    EXPECT_EQ(b.header().job_id(), "job1");
    EXPECT_EQ(b.header().generation(), 5);
    EXPECT_EQ(b.node_id(), "node-3");
    EXPECT_GT(b.sent_unix_ms(), 0);
    EXPECT_EQ(b.ranks_size(), 8);
  }
  EXPECT_EQ(beats[3].ranks(0).step(), 2);
}

TEST(HealthStreamTest, ACoordinatorThatGoesAwayBreaksTheStreamAsUnavailable) {
  auto fake = std::make_unique<FakeCoordinator>("job1", "secret");
  auto client = Client(Options(fake->target()));
  std::atomic<bool> ended{false};
  absl::Status end_status;
  absl::StatusOr<std::unique_ptr<HealthStream>> hs = client->OpenHealthStream(
      "node-1", 1, Beat(0), [](const v1::Command&) {},
      [&](const absl::Status& s) {
        end_status = s;
        ended = true;
      });
  ASSERT_TRUE(hs.ok()) << hs.status();
  while (fake->open_health_streams() < 1) absl::SleepFor(absl::Milliseconds(5));
  fake.reset();  // the coordinator dies
  for (int i = 0; i < 400 && !ended; ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_TRUE(ended);
  EXPECT_TRUE((*hs)->ended());
  EXPECT_EQ(end_status.code(), absl::StatusCode::kUnavailable) << end_status;
  EXPECT_THAT(Msg(end_status), HasSubstr("node-1"));
  absl::Status sent = (*hs)->Send(Beat(1));
  EXPECT_EQ(sent.code(), absl::StatusCode::kUnavailable) << sent;
  EXPECT_THAT(Msg(sent), HasSubstr("node-1"));
}

TEST(HealthStreamTest, ARefusedStreamReportsTheRefusal) {
  FakeCoordinator fake("job1", "secret");
  fake.RefuseHealth(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                 "fake: generation 1 is stale (current 2)"));
  auto client = Client(Options(fake.target()));
  absl::StatusOr<std::unique_ptr<HealthStream>> hs =
      client->OpenHealthStream("node-1", 1, Beat(0), [](const v1::Command&) {});
  ASSERT_TRUE(hs.ok()) << hs.status();
  for (int i = 0; i < 400 && !(*hs)->ended(); ++i) absl::SleepFor(absl::Milliseconds(5));
  absl::Status sent = (*hs)->Send(Beat(1));
  EXPECT_EQ(sent.code(), absl::StatusCode::kFailedPrecondition) << sent;
  EXPECT_THAT(Msg(sent), HasSubstr("stale"));
}

TEST(HealthStreamTest, OpeningAgainstADownCoordinatorIsUnavailable) {
  CoordinatorClientOptions o = Options("127.0.0.1:" + std::to_string(testing::UnusedPort()));
  o.retry.max_elapsed = absl::Milliseconds(200);
  auto client = Client(o);
  absl::StatusOr<std::unique_ptr<HealthStream>> hs =
      client->OpenHealthStream("node-1", 1, Beat(0), [](const v1::Command&) {});
  EXPECT_EQ(hs.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Msg(hs.status()), HasSubstr("unreachable"));
  EXPECT_THAT(Msg(hs.status()), HasSubstr("node-1"));
}

TEST(EventWatchTest, EventsArriveInOrderAndTheCallbackCanStopEarly) {
  FakeCoordinator fake("job1", "secret");
  std::vector<v1::JobEvent> events(3);
  for (int i = 0; i < 3; ++i) {
    events[i].set_kind(v1::JobEvent::KIND_NODE_JOINED);
    events[i].set_node_id("n" + std::to_string(i));
  }
  fake.SetEvents(events);
  auto client = Client(Options(fake.target()));
  std::vector<std::string> seen;
  EXPECT_TRUE(client->WatchEvents([&](const v1::JobEvent& e) {
                      seen.push_back(e.node_id());
                      return true;
                    }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"n0", "n1", "n2"}));
  seen.clear();
  EXPECT_TRUE(client->WatchEvents([&](const v1::JobEvent& e) {
                      seen.push_back(e.node_id());
                      return false;
                    }).ok());
  EXPECT_EQ(seen, std::vector<std::string>{"n0"});

  absl::StatusOr<std::unique_ptr<EventWatch>> watch = client->OpenEventWatch();
  ASSERT_TRUE(watch.ok());
  v1::JobEvent e;
  int n = 0;
  while ((*watch)->Next(&e)) ++n;
  EXPECT_EQ(n, 3);
  EXPECT_TRUE((*watch)->Finish().ok());
}

}  // namespace
}  // namespace colossus::launcher
