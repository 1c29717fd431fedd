// The store relay end to end: a job of one node with two CPU workers under the real
// colossus-launch binary forms its Gloo group through the node agent's relay (the
// workers find it in COLOSSUS_STORE and refuse to run without it) and all-reduces.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace colossus::launcher::testing {
namespace {

using ::testing::HasSubstr;

const std::string kLaunch = COLOSSUS_BINARY_DIR "/launcher/colossus-launch";

// Runs `argv` with output to `out`; the exit code, or -1 if it ran past `seconds`.
int RunProgram(const std::vector<std::string>& argv, const std::string& out, double seconds) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    if (!freopen(out.c_str(), "w", stdout) || !freopen(out.c_str(), "a", stderr)) _exit(126);
    std::vector<char*> c;
    for (const std::string& a : argv) c.push_back(const_cast<char*>(a.c_str()));
    c.push_back(nullptr);
    execv(c[0], c.data());
    _exit(127);
  }
  int status = 0;
  if (!WaitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; }, seconds)) {
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A one-node, two-worker job of the relay worker (worker_args: "" or "--direct").
std::string WriteManifest(const TempDir& dir, const std::string& run_dir, const std::string& worker_args) {
  const std::string manifest = dir / "job.yaml";
  std::ofstream(manifest) << "version: 1\n"
                          << "job:\n  name: relay-e2e\n  run_dir: " << run_dir << "\n"
                          << "nodes:\n"
                          << "  - {name: a, host: 127.0.0.1, gpus: 0, workers: 2}\n"
                          << "worker:\n  command: " << RELAY_GLOO_WORKER_PATH << " " << worker_args << "\n"
                          << "restart:\n  max_restarts: 0\n"
                          << "health:\n  heartbeat_interval: 200ms\n  node_timeout: 10s\n";
  return manifest;
}

TEST(StoreRelayE2eTest, TwoWorkersFormTheirGlooGroupThroughTheRelay) {
  TempDir dir;
  const std::string run_dir = dir / "run";
  const std::string manifest = WriteManifest(dir, run_dir, "");
  const std::string out = dir / "launch.out";
  const int code = RunProgram({kLaunch, manifest, "--no-status"}, out, 120);
  const std::string output = ReadFile(out);
  ASSERT_EQ(code, 0) << output;
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(ReadFile(run_dir + "/gloo.rank" + std::to_string(r)), "ok 3\n") << "rank " << r << "\n" << output;
  }
  // The agent said where its relay listens, and cleaned up its socket on exit.
  const std::string agent_log = ReadFile(run_dir + "/logs/agent-a.err") + ReadFile(run_dir + "/logs/agent-a.out");
  EXPECT_THAT(agent_log, HasSubstr("store relay for the workers at unix:")) << agent_log;
  EXPECT_FALSE(std::filesystem::exists(run_dir + "/relay/a.sock"));
}

// The relay cannot start (its socket path is taken by a regular file): the agent says so
// and the job still runs, its workers using the coordinator directly.
TEST(StoreRelayE2eTest, AJobWhoseRelayCannotStartRunsWithoutIt) {
  TempDir dir;
  const std::string run_dir = dir / "run";
  std::filesystem::create_directories(run_dir + "/relay");
  std::ofstream(run_dir + "/relay/a.sock") << "not a socket\n";
  const std::string manifest = WriteManifest(dir, run_dir, "--direct");
  const std::string out = dir / "launch.out";
  const int code = RunProgram({kLaunch, manifest, "--no-status"}, out, 120);
  const std::string output = ReadFile(out);
  ASSERT_EQ(code, 0) << output;
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(ReadFile(run_dir + "/gloo.rank" + std::to_string(r)), "ok 3\n") << "rank " << r << "\n" << output;
  }
  const std::string agent_log = ReadFile(run_dir + "/logs/agent-a.err") + ReadFile(run_dir + "/logs/agent-a.out");
  EXPECT_THAT(agent_log, HasSubstr("store relay not started")) << agent_log;
  EXPECT_THAT(agent_log, HasSubstr("is not a socket")) << agent_log;
}

}  // namespace
}  // namespace colossus::launcher::testing
