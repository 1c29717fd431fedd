// AgentCore driven by scripted events and a fake clock: each test is a story the node
// agent lives through (a clean run, a restart, a stop, an interrupt, a lost coordinator),
// checked by the actions it asks for and the state it is in.
#include "colossus/launcher/agent_state.h"

#include <signal.h>

#include "colossus/launcher/exit_codes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using State = AgentCore::State;
using Cmd = AgentCore::CommandKind;

std::vector<std::string> Names(const std::vector<AgentAction>& actions) {
  std::vector<std::string> names;
  for (const AgentAction& a : actions) names.push_back(a.DebugString());
  return names;
}

class AgentCoreTest : public ::testing::Test {
 protected:
  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
  AgentCore core_{AgentCore::Options{.default_grace = absl::Seconds(10),
                                     .reconnect_backoff = absl::Seconds(1)}};

  // Begin, join generation g, workers up, stream open.
  void RunUntilRunning(int64_t g) {
    EXPECT_THAT(Names(core_.Begin(now_)), ElementsAre("Join(0)"));
    EXPECT_THAT(Names(core_.OnJoined(g, absl::Seconds(1), absl::Seconds(30), now_)),
                ElementsAre("StartWorkers(" + std::to_string(g) + ")"));
    EXPECT_THAT(Names(core_.OnWorkersStarted(absl::OkStatus(), now_)),
                ElementsAre("OpenHealth(" + std::to_string(g) + ")"));
    EXPECT_THAT(Names(core_.OnHealthOpened(absl::OkStatus(), now_)), IsEmpty());
    EXPECT_EQ(core_.state(), State::kRunning);
  }
};

TEST_F(AgentCoreTest, CleanRunBeatsThenExitsWithTheJobsOutcome) {
  RunUntilRunning(1);
  // Beats at the interval, not before.
  EXPECT_EQ(core_.NextWakeup(), now_ + absl::Seconds(1));
  EXPECT_THAT(Names(core_.OnTick(now_ + absl::Milliseconds(500))), IsEmpty());
  EXPECT_THAT(Names(core_.OnTick(now_ + absl::Seconds(1))), ElementsAre("SendBeat"));
  // A worker exit is reported at once.
  EXPECT_THAT(Names(core_.OnWorkerExited(now_ + absl::Milliseconds(1200))), ElementsAre("SendBeat"));
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_ + absl::Milliseconds(1300))), ElementsAre("SendBeat"));
  EXPECT_EQ(core_.state(), State::kIdle);
  // Idle agents keep beating until the coordinator decides.
  EXPECT_THAT(Names(core_.OnTick(now_ + absl::Seconds(3))), ElementsAre("SendBeat"));
  EXPECT_THAT(Names(core_.OnCommand(Cmd::kExit, 1, absl::ZeroDuration(), true, "all ranks succeeded",
                                    now_ + absl::Seconds(3))),
              ElementsAre("CloseHealth", "ExitJobEnded(success)"));
  EXPECT_EQ(core_.state(), State::kDone);
  EXPECT_EQ(core_.exit_code(), kExitSuccess);
  EXPECT_EQ(core_.NextWakeup(), absl::InfiniteFuture());
}

TEST_F(AgentCoreTest, RestartStopsWorkersThenJoinsTheNewGeneration) {
  RunUntilRunning(1);
  auto actions = core_.OnCommand(Cmd::kRestart, 2, absl::Seconds(5), false,
                                 "rank 3 on node-b killed by signal 9", now_);
  ASSERT_THAT(Names(actions), ElementsAre("StopWorkers(5s)"));
  EXPECT_EQ(core_.state(), State::kStopping);
  // Still beating while the workers stop.
  EXPECT_THAT(Names(core_.OnTick(now_ + absl::Seconds(1))), ElementsAre("SendBeat"));
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_ + absl::Seconds(2))),
              ElementsAre("CloseHealth", "Join(2)"));
  EXPECT_EQ(core_.state(), State::kJoining);
  // No beats while joining.
  EXPECT_THAT(Names(core_.OnTick(now_ + absl::Seconds(9))), IsEmpty());
  EXPECT_THAT(Names(core_.OnJoined(2, absl::Seconds(1), absl::Seconds(30), now_)),
              ElementsAre("StartWorkers(2)"));
  EXPECT_EQ(core_.generation(), 2);
}

TEST_F(AgentCoreTest, RestartWithNoWorkersRunningJoinsAtOnce) {
  RunUntilRunning(1);
  core_.OnAllWorkersExited(now_);
  EXPECT_THAT(Names(core_.OnCommand(Cmd::kRestart, 4, absl::ZeroDuration(), false, "", now_)),
              ElementsAre("CloseHealth", "Join(4)"));
}

TEST_F(AgentCoreTest, StopWorkersThenRestartKeepsTheRestart) {
  RunUntilRunning(1);
  EXPECT_THAT(Names(core_.OnCommand(Cmd::kStopWorkers, 1, absl::ZeroDuration(), false, "", now_)),
              ElementsAre("StopWorkers(10s)"));
  // The RESTART arrives while they are still stopping: it wins over "stay".
  EXPECT_THAT(Names(core_.OnCommand(Cmd::kRestart, 2, absl::Seconds(3), false, "", now_)),
              ElementsAre("StopWorkers(3s)"));
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_)), ElementsAre("CloseHealth", "Join(2)"));
}

TEST_F(AgentCoreTest, StopWorkersAloneLeavesTheAgentIdleAndConnected) {
  RunUntilRunning(1);
  core_.OnCommand(Cmd::kStopWorkers, 1, absl::ZeroDuration(), false, "", now_);
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_)), ElementsAre("SendBeat"));
  EXPECT_EQ(core_.state(), State::kIdle);
  EXPECT_TRUE(core_.health_open());
}

TEST_F(AgentCoreTest, ExitDuringAStopWinsOverTheRestart) {
  RunUntilRunning(1);
  core_.OnCommand(Cmd::kRestart, 2, absl::ZeroDuration(), false, "", now_);
  core_.OnCommand(Cmd::kExit, 2, absl::ZeroDuration(), false, "restart budget spent", now_);
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_)),
              ElementsAre("CloseHealth", "ExitJobEnded(failure)"));
  EXPECT_EQ(core_.exit_code(), kExitJobFailed);
  EXPECT_EQ(core_.exit_message(), "restart budget spent");
}

TEST_F(AgentCoreTest, InterruptStopsWorkersLeavesAndExits) {
  RunUntilRunning(1);
  EXPECT_THAT(Names(core_.OnInterrupt(SIGTERM, now_)), ElementsAre("StopWorkers(10s)"));
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_)),
              ElementsAre("Leave(interrupted by SIGTERM)", "CloseHealth", "Exit(130)"));
  EXPECT_EQ(core_.exit_code(), kExitInterrupted);
  // Later commands change nothing.
  EXPECT_THAT(Names(core_.OnCommand(Cmd::kRestart, 3, absl::ZeroDuration(), false, "", now_)), IsEmpty());
}

TEST_F(AgentCoreTest, InterruptWhileJoiningEndsWhenTheJoinIsCancelled) {
  core_.Begin(now_);
  EXPECT_THAT(Names(core_.OnInterrupt(SIGINT, now_)), IsEmpty());
  EXPECT_THAT(Names(core_.OnJoinFailed(absl::CancelledError("cancelled"), now_)),
              ElementsAre("Exit(130)"));
}

TEST_F(AgentCoreTest, InterruptWhileStartingStopsTheFreshWorkers) {
  core_.Begin(now_);
  core_.OnJoined(1, absl::Seconds(1), absl::Seconds(30), now_);
  EXPECT_THAT(Names(core_.OnInterrupt(SIGINT, now_)), IsEmpty());
  EXPECT_THAT(Names(core_.OnWorkersStarted(absl::OkStatus(), now_)), ElementsAre("StopWorkers(10s)"));
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_)),
              ElementsAre("Leave(interrupted)", "Exit(130)"));
}

TEST_F(AgentCoreTest, JoinFailuresMapToExitCodes) {
  struct Case {
    absl::Status status;
    int code;
    const char* action;
  };
  for (const Case& c : {Case{absl::UnavailableError("coordinator h:1 unreachable after 5 attempts"),
                             kExitCoordinatorUnreachable, "Exit(4)"},
                        Case{absl::UnauthenticatedError("wrong token"), kExitBadManifest, "Exit(2)"},
                        Case{absl::AlreadyExistsError("node-a is a member"), kExitBadManifest, "Exit(2)"},
                        Case{absl::DeadlineExceededError("no generation formed"), kExitJobFailed, "Exit(1)"},
                        Case{absl::FailedPreconditionError("job ended"), kExitJobFailed,
                             "ExitJobEnded(failure)"}}) {
    AgentCore core(AgentCore::Options{});
    core.Begin(now_);
    EXPECT_THAT(Names(core.OnJoinFailed(c.status, now_)), ElementsAre(c.action)) << c.status;
    EXPECT_EQ(core.exit_code(), c.code) << c.status;
    EXPECT_EQ(core.exit_message(), c.status.message());
  }
}

TEST_F(AgentCoreTest, SpawnFailureIsReportedOnTheStream) {
  core_.Begin(now_);
  core_.OnJoined(1, absl::Seconds(1), absl::Seconds(30), now_);
  EXPECT_THAT(Names(core_.OnWorkersStarted(absl::NotFoundError("rank 0: no such program"), now_)),
              ElementsAre("OpenHealth(1)"));
  EXPECT_EQ(core_.state(), State::kIdle);
  EXPECT_FALSE(core_.workers_running());
}

TEST_F(AgentCoreTest, BrokenStreamIsReopenedWithinTheNodeTimeout) {
  RunUntilRunning(1);
  EXPECT_THAT(Names(core_.OnHealthEnded(absl::UnavailableError("connection reset"), now_)), IsEmpty());
  EXPECT_EQ(core_.NextWakeup(), now_ + absl::Seconds(1));
  EXPECT_THAT(Names(core_.OnTick(now_ + absl::Seconds(1))), ElementsAre("OpenHealth(1)"));
  // The coordinator is still restarting: refused again; a retry a second later.
  EXPECT_THAT(Names(core_.OnHealthOpened(absl::UnavailableError("refused"), now_ + absl::Seconds(1))),
              IsEmpty());
  EXPECT_THAT(Names(core_.OnTick(now_ + absl::Seconds(2))), ElementsAre("OpenHealth(1)"));
  EXPECT_THAT(Names(core_.OnHealthOpened(absl::OkStatus(), now_ + absl::Seconds(2))), IsEmpty());
  // Re-adopted: workers were never stopped.
  EXPECT_EQ(core_.state(), State::kRunning);
  EXPECT_TRUE(core_.workers_running());
}

TEST_F(AgentCoreTest, CoordinatorLostPastTheNodeTimeoutStopsAndExits) {
  RunUntilRunning(1);
  core_.OnHealthEnded(absl::UnavailableError("connection reset"), now_);
  absl::Time t = now_;
  for (int i = 0; i < 29; ++i) {
    t += absl::Seconds(1);
    ASSERT_THAT(Names(core_.OnTick(t)), ElementsAre("OpenHealth(1)"));
    core_.OnHealthOpened(absl::UnavailableError("unreachable"), t);
  }
  t += absl::Seconds(1);
  EXPECT_THAT(Names(core_.OnTick(t)), ElementsAre("StopWorkers(10s)"));
  EXPECT_THAT(Names(core_.OnAllWorkersExited(t)), ElementsAre("Exit(4)"));
  EXPECT_EQ(core_.exit_code(), kExitCoordinatorUnreachable);
  EXPECT_THAT(core_.exit_message(), ::testing::HasSubstr("unreachable"));
}

TEST_F(AgentCoreTest, FencedStreamMeansJoinAgain) {
  RunUntilRunning(3);
  EXPECT_THAT(Names(core_.OnHealthEnded(absl::FailedPreconditionError("generation 3 is older than 4"), now_)),
              ElementsAre("StopWorkers(10s)"));
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_)), ElementsAre("Join(0)"));
}

TEST_F(AgentCoreTest, StreamEndedByTheCoordinatorAfterRestartChangesNothing) {
  RunUntilRunning(1);
  core_.OnCommand(Cmd::kRestart, 2, absl::ZeroDuration(), false, "", now_);
  // The coordinator closes the stream after the RESTART, while the workers still stop:
  // neither a reconnect nor a different plan.
  EXPECT_THAT(Names(core_.OnHealthEnded(absl::FailedPreconditionError("generation 1 ended"), now_)),
              IsEmpty());
  EXPECT_EQ(core_.NextWakeup(), absl::InfiniteFuture());
  EXPECT_THAT(Names(core_.OnAllWorkersExited(now_)), ElementsAre("Join(2)"));
}

TEST_F(AgentCoreTest, ClosingOurOwnStreamIsNotABreak) {
  RunUntilRunning(1);
  core_.OnAllWorkersExited(now_);
  core_.OnCommand(Cmd::kRestart, 2, absl::ZeroDuration(), false, "", now_);
  // The stream's end arrives after the agent closed it for the rejoin.
  EXPECT_THAT(Names(core_.OnHealthEnded(absl::OkStatus(), now_)), IsEmpty());
  EXPECT_EQ(core_.state(), State::kJoining);
  EXPECT_EQ(core_.NextWakeup(), absl::InfiniteFuture());
}

}  // namespace
}  // namespace colossus::launcher
