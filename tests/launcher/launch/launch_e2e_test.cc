// colossus-launch end to end: the real binary, an in-process coordinator, one agent
// process per node (two "nodes" on this machine: hosts 127.0.0.1 and 127.0.0.2), and a
// test worker that checks its environment. Each test is one job a user would run:
// completes, survives a kill -9 of a worker or of an agent, stops on Ctrl-C or on
// `colossus-launch stop`, fails with a summary, or is refused for a bad manifest.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "../agent/test_util.h"

namespace colossus::launcher {
namespace {

using testing::ProcessAlive;
using testing::ReadFile;
using testing::TempDir;
using testing::WaitUntil;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kLaunch = COLOSSUS_BINARY_DIR "/launcher/colossus-launch";
const std::string kWorker = TEST_WORKER_PATH;

// A colossus-launch process of the test's, in a process group of its own (so a signal
// to it is a signal to the launcher alone), output to files.
class Launcher {
 public:
  Launcher(const std::vector<std::string>& args, const std::string& dir) : out_(dir + "/launch.out"), err_(dir + "/launch.err") {
    std::vector<std::string> argv = {kLaunch};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      freopen(out_.c_str(), "w", stdout);
      freopen(err_.c_str(), "w", stderr);
      unsetenv("CUDA_VISIBLE_DEVICES");
      std::vector<char*> c;
      for (std::string& a : argv) c.push_back(a.data());
      c.push_back(nullptr);
      execv(c[0], c.data());
      _exit(127);
    }
  }
  ~Launcher() {
    if (pid_ > 0 && status_ < 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // The exit code; -1 if it did not end within `seconds` (then it is killed).
  int Wait(double seconds = 60) {
    WaitUntil([&] { return waitpid(pid_, &status_, WNOHANG) == pid_; }, seconds);
    if (status_ < 0) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  std::string Output() const { return ReadFile(out_) + ReadFile(err_); }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  int status_ = -1;
};

// Runs colossus-launch to completion (status, stop, dry runs).
int RunLaunch(const std::vector<std::string>& args, const std::string& dir, std::string* output) {
  std::filesystem::create_directories(dir);
  Launcher l(args, dir);
  const int code = l.Wait();
  *output = l.Output();
  return code;
}

class LaunchTest : public ::testing::Test {
 protected:
  // Two nodes of two CPU workers each; `worker_args` go to the test worker.
  std::string WriteManifest(const std::string& worker_args, int max_restarts = 3,
                            const std::string& extra = "") {
    const std::string path = dir_ / "job.yaml";
    std::ofstream(path) << "version: 1\n"
                        << "job:\n  name: e2e\n  run_dir: " << run_dir() << "\n"
                        << "nodes:\n"
                        << "  - {name: a, host: 127.0.0.1, gpus: 0, workers: 2, env: {NODE_VAR: from-a}}\n"
                        << "  - {name: b, host: 127.0.0.2, gpus: 0, workers: 2, env: {NODE_VAR: from-b}}\n"
                        << "worker:\n  command: " << kWorker << " " << worker_args << "\n"
                        << "  env: {JOB_VAR: everyone, NODE_VAR: overridden}\n"
                        << "restart:\n  max_restarts: " << max_restarts << "\n"
                        << "health:\n  heartbeat_interval: 200ms\n  node_timeout: 5s\n"
                        << extra;
    return path;
  }
  std::string run_dir() const { return dir_ / "run"; }
  std::string WorkerFile(int gen, int rank, const std::string& kind) const {
    return absl::StrCat(run_dir(), "/workers/gen", gen, ".rank", rank, ".", kind);
  }
  // Waits for every rank of generation `gen` to be up; returns {worker pid, agent pid}.
  std::vector<std::pair<pid_t, pid_t>> WaitForWorkers(int gen, int ranks = 4) {
    std::vector<std::pair<pid_t, pid_t>> pids;
    for (int r = 0; r < ranks; ++r) {
      const std::string path = WorkerFile(gen, r, "pid");
      EXPECT_TRUE(WaitUntil([&] { return std::filesystem::exists(path); }, 30)) << path;
      std::istringstream in(ReadFile(path));
      pid_t w = -1, a = -1;
      in >> w >> a;
      pids.emplace_back(w, a);
    }
    return pids;
  }
  std::map<std::string, std::string> WorkerEnv(int gen, int rank) {
    std::map<std::string, std::string> env;
    std::istringstream in(ReadFile(WorkerFile(gen, rank, "env")));
    for (std::string line; std::getline(in, line);) {
      const size_t eq = line.find('=');
      if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return env;
  }

  TempDir dir_;
};

TEST_F(LaunchTest, LocalJobOfFourWorkersCompletesAndEachSawItsEnvironment) {
  Launcher launch({WriteManifest("--steps 3 --store-check")}, dir_.path());
  ASSERT_EQ(launch.Wait(), 0) << launch.Output();
  const std::string out = launch.Output();
  EXPECT_THAT(out, HasSubstr("job e2e succeeded"));
  const std::string token = ReadFile(run_dir() + "/token");
  std::set<std::string> ports;
  for (int r = 0; r < 4; ++r) {
    auto env = WorkerEnv(1, r);
    EXPECT_EQ(env["RANK"], std::to_string(r));
    EXPECT_EQ(env["WORLD_SIZE"], "4");
    EXPECT_EQ(env["LOCAL_RANK"], std::to_string(r % 2));
    EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "2");
    EXPECT_EQ(env["GROUP_RANK"], std::to_string(r / 2));
    EXPECT_EQ(env["MASTER_ADDR"], "127.0.0.1");
    ports.insert(env["MASTER_PORT"]);
    EXPECT_EQ(env["COLOSSUS_JOB_ID"], "e2e");
    EXPECT_EQ(env["COLOSSUS_GENERATION"], "1");
    EXPECT_EQ(env["COLOSSUS_RUN_DIR"], run_dir());
    EXPECT_EQ(env["COLOSSUS_NODE_ID"], r < 2 ? "a" : "b");
    EXPECT_EQ(env["TEST_TOKEN"] + "\n", token);
    EXPECT_EQ(env.count("CUDA_VISIBLE_DEVICES"), 0u);
    EXPECT_EQ(env["OMP_NUM_THREADS"], "1");
    EXPECT_EQ(env["JOB_VAR"], "everyone");
    EXPECT_EQ(env["NODE_VAR"], r < 2 ? "from-a" : "from-b");  // the node's env wins
    // The COLOSSUS_* variables are enough to rendezvous through the coordinator.
    EXPECT_EQ(ReadFile(WorkerFile(1, r, "store")), "0 1 2 3 ");
    // Each rank's output: in its log file and on the launcher's terminal, prefixed.
    EXPECT_THAT(ReadFile(absl::StrCat(run_dir(), "/logs/gen1/rank", r, ".out")),
                HasSubstr(absl::StrCat("worker rank ", r, " of 4 (generation 1) up")));
    EXPECT_THAT(out, HasSubstr(absl::StrCat("[rank ", r, "] worker rank ", r, " of 4")));
  }
  EXPECT_EQ(ports.size(), 1u) << "every rank must see node 0's MASTER_PORT";
  EXPECT_TRUE(std::filesystem::exists(run_dir() + "/logs/agent-a.err"));
}

TEST_F(LaunchTest, KilledWorkerRestartsTheGroupAndTheRestartIsReported) {
  const std::string release = dir_ / "release";
  const std::string manifest = WriteManifest("--hold-generation 1 --hold-file " + release);
  Launcher launch({manifest}, dir_.path());
  auto gen1 = WaitForWorkers(1);
  ASSERT_EQ(kill(gen1[3].first, SIGKILL), 0);
  auto gen2 = WaitForWorkers(2);
  // Every worker of generation 1 was stopped for the restart.
  for (auto [w, a] : gen1) EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(w); })) << w;
  // The restart count and its reason, in `colossus-launch status`...
  std::string status;
  EXPECT_EQ(RunLaunch({"status", manifest}, dir_ / "st", &status), 0) << status;
  EXPECT_THAT(status, HasSubstr("generation 2, restarts 1/3"));
  EXPECT_THAT(status, HasSubstr("killed by signal 9"));
  EXPECT_THAT(status, HasSubstr("rank 3"));
  // The new generation's workers ran their 3 steps and hold: status counts them against
  // the total the workers report (it reaches the coordinator within a heartbeat or two).
  EXPECT_TRUE(WaitUntil([&] {
    status.clear();
    return RunLaunch({"status", manifest}, dir_ / "st", &status) == 0 &&
           status.find("steps done 3..3 of 3") != std::string::npos;
  })) << status;
  // ...and in the workers' environment.
  EXPECT_EQ(WorkerEnv(2, 0)["TORCHELASTIC_RESTART_COUNT"], "1");
  std::ofstream(release) << "go";
  ASSERT_EQ(launch.Wait(), 0) << launch.Output();
  // ...and in the launcher's log.
  EXPECT_THAT(launch.Output(), HasSubstr("restart 1 of 3"));
  EXPECT_THAT(launch.Output(), HasSubstr("killed by signal 9"));
}

TEST_F(LaunchTest, KilledAgentTakesItsWorkersAndIsStartedAgain) {
  Launcher launch({WriteManifest("--hold-generation 1")}, dir_.path());
  auto gen1 = WaitForWorkers(1);
  const pid_t agent_b = gen1[2].second;
  ASSERT_EQ(gen1[3].second, agent_b);
  ASSERT_EQ(kill(agent_b, SIGKILL), 0);
  // Node b's workers die with their agent: no orphans.
  for (int r : {2, 3}) {
    EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(gen1[r].first); })) << "rank " << r << " survived its agent";
  }
  // A fresh agent for node b joins the next generation, which completes.
  ASSERT_EQ(launch.Wait(), 0) << launch.Output();
  EXPECT_THAT(launch.Output(), HasSubstr("agent of node b killed by signal 9"));
  EXPECT_NE(WorkerEnv(2, 2)["COLOSSUS_GENERATION"], "");
  for (auto [w, a] : gen1) EXPECT_FALSE(ProcessAlive(w));
}

TEST_F(LaunchTest, SigintStopsTheJobOnEveryNode) {
  Launcher launch({WriteManifest("--hold-generation 1")}, dir_.path());
  auto gen1 = WaitForWorkers(1);
  ASSERT_EQ(kill(launch.pid(), SIGINT), 0);
  EXPECT_EQ(launch.Wait(), 130) << launch.Output();
  EXPECT_THAT(launch.Output(), HasSubstr("stopping the job on every node"));
  for (auto [w, a] : gen1) {
    EXPECT_FALSE(ProcessAlive(w)) << "worker " << w;
    EXPECT_FALSE(ProcessAlive(a)) << "agent " << a;
  }
}

TEST_F(LaunchTest, KillingTheLauncherLeavesNothingRunning) {
  Launcher launch({WriteManifest("--hold-generation 1")}, dir_.path());
  auto gen1 = WaitForWorkers(1);
  ASSERT_EQ(kill(launch.pid(), SIGKILL), 0);
  EXPECT_EQ(launch.Wait(), 128 + SIGKILL);
  for (auto [w, a] : gen1) {
    EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(w); })) << "worker " << w;
    EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(a); })) << "agent " << a;
  }
}

TEST_F(LaunchTest, StopCommandStopsARunningJob) {
  const std::string manifest = WriteManifest("--hold-generation 1");
  Launcher launch({manifest}, dir_.path());
  auto gen1 = WaitForWorkers(1);
  std::string out;
  EXPECT_EQ(RunLaunch({"stop", manifest, "--reason", "maintenance window"}, dir_ / "stop", &out), 0) << out;
  EXPECT_EQ(launch.Wait(), 3) << launch.Output();
  EXPECT_THAT(launch.Output(), HasSubstr("maintenance window"));
  for (auto [w, a] : gen1) EXPECT_FALSE(ProcessAlive(w));
}

TEST_F(LaunchTest, FailingWorkersEndTheJobWithASummary) {
  Launcher launch({WriteManifest("--steps 1 --fail-code 7", /*max_restarts=*/1)}, dir_.path());
  ASSERT_EQ(launch.Wait(), 1) << launch.Output();
  const std::string out = launch.Output();
  EXPECT_THAT(out, HasSubstr("job e2e failed in generation 2 after 1 restart(s)"));
  // The summary names node, rank, exit code and the rank's last lines.
  EXPECT_THAT(out, ::testing::ContainsRegex("node [ab], rank [0-3]: exit code 7"));
  EXPECT_THAT(out, HasSubstr("| loss is nan at step 1"));
}

TEST_F(LaunchTest, BadManifestExitsTwoAndStartsNothing) {
  const std::string path = dir_ / "bad.yaml";
  std::ofstream(path) << "version: 1\njob:\n  name: bad\n  run_dir: " << run_dir() << "\n"
                      << "nodes:\n  - {host: 127.0.0.1, gpuz: 2}\n"
                      << "worker:\n  command: " << kWorker << "\n";
  std::string out;
  EXPECT_EQ(RunLaunch({path}, dir_.path(), &out), 2);
  EXPECT_THAT(out, HasSubstr("bad.yaml:6"));
  EXPECT_THAT(out, HasSubstr("gpuz"));
  EXPECT_FALSE(std::filesystem::exists(run_dir())) << "nothing may start for a bad manifest";
  // Bad flags are the same class of error.
  EXPECT_EQ(RunLaunch({WriteManifest(""), "--log", "loud"}, dir_.path(), &out), 2);
  EXPECT_FALSE(std::filesystem::exists(run_dir()));
}

TEST_F(LaunchTest, DryRunPrintsThePlanAndStartsNothing) {
  std::string out;
  ASSERT_EQ(RunLaunch({WriteManifest("--steps 1"), "--dry-run", "--", "--extra", "x y"}, dir_.path(), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("world size 4"));
  EXPECT_THAT(out, HasSubstr("--agent"));
  EXPECT_THAT(out, HasSubstr("--node-id a"));
  EXPECT_THAT(out, HasSubstr("--node-id b"));
  EXPECT_THAT(out, HasSubstr("--extra 'x y'"));
  EXPECT_FALSE(std::filesystem::exists(run_dir()));
}

TEST_F(LaunchTest, UnreachableCoordinatorExitsFour) {
  // The manifest names a coordinator that is not there.
  std::string out;
  EXPECT_EQ(RunLaunch({WriteManifest("--steps 1", 3, "coordinator:\n  address: 127.0.0.1:9\nauth:\n  token: abc\n")},
                      dir_.path(), &out),
            4)
      << out;
  EXPECT_THAT(out, HasSubstr("127.0.0.1:9"));
}

}  // namespace
}  // namespace colossus::launcher
