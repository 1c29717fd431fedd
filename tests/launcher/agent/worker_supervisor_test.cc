// WorkerSupervisor with real processes: the environment workers see, exits reported with
// code or signal, stop escalation, no orphans after the agent is SIGKILLed, log files and
// echoed prefixes, failure tails, spawn errors.
#include "colossus/launcher/worker_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <set>

#include "colossus/launcher/worker_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace colossus::launcher {
namespace {

using testing::ProcessAlive;
using testing::ReadFile;
using testing::ReadPid;
using testing::TempDir;
using testing::WaitUntil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

WorkerProcessSpec Shell(int rank, const std::string& script) {
  WorkerProcessSpec spec;
  spec.local_rank = rank;
  spec.rank = rank;
  spec.argv = {"sh", "-c", script};
  return spec;
}

// Collects on_exit reports.
struct ExitLog {
  std::mutex mu;
  std::map<int, WorkerExit> by_rank;
  std::function<void(const WorkerExit&)> Callback() {
    return [this](const WorkerExit& e) {
      std::lock_guard lock(mu);
      by_rank[e.rank] = e;
    };
  }
};

std::map<std::string, std::string> ParseEnv(const std::string& text) {
  std::map<std::string, std::string> env;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

TEST(WorkerSupervisorTest, WorkersSeeTheirEnvironmentAndWorkingDirectory) {
  TempDir dir;
  std::filesystem::create_directories(dir / "work");
  std::vector<WorkerProcessSpec> specs;
  for (int local = 0; local < 3; ++local) {
    WorkerEnvInputs in;
    in.rank = 4 + local;
    in.local_rank = local;
    in.world_size = 8;
    in.local_world_size = 3;
    in.group_rank = 1;
    in.num_nodes = 3;
    in.master_addr = "10.0.0.1";
    in.master_port = 29500;
    in.coordinator = "10.0.0.9:7000";
    in.job_id = "job-a";
    in.generation = 2;
    in.token_file = "/secrets/token";
    in.run_dir = dir.path();
    in.node_id = "node-b";
    in.gpu_index = 5 + local;
    WorkerProcessSpec spec = Shell(in.rank, "env > " + dir.path() + "/env.$RANK; pwd > " +
                                         dir.path() + "/pwd.$RANK");
    spec.local_rank = local;
    spec.env = WorkerEnvironment(in);
    spec.env.emplace_back("USER_VAR", "from manifest");
    spec.cwd = dir / "work";
    specs.push_back(spec);
  }
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  options.base_env = {"PATH=/usr/bin:/bin", "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7",
                      "KEEP_ME=yes"};
  ExitLog exits;
  options.on_exit = exits.Callback();
  auto sup = WorkerSupervisor::Start(options, specs);
  ASSERT_TRUE(sup.ok()) << sup.status();
  (*sup)->Wait();
  EXPECT_EQ((*sup)->state(), WorkerSupervisor::State::kExited);
  ASSERT_EQ(exits.by_rank.size(), 3u);
  for (int local = 0; local < 3; ++local) {
    const int rank = 4 + local;
    EXPECT_TRUE(exits.by_rank[rank].success()) << exits.by_rank[rank].Describe();
    auto env = ParseEnv(ReadFile(dir / ("env." + std::to_string(rank))));
    EXPECT_EQ(env["RANK"], std::to_string(rank));
    EXPECT_EQ(env["LOCAL_RANK"], std::to_string(local));
    EXPECT_EQ(env["WORLD_SIZE"], "8");
    EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "3");
    EXPECT_EQ(env["GROUP_RANK"], "1");
    EXPECT_EQ(env["GROUP_WORLD_SIZE"], "3");
    EXPECT_EQ(env["MASTER_ADDR"], "10.0.0.1");
    EXPECT_EQ(env["MASTER_PORT"], "29500");
    EXPECT_EQ(env["COLOSSUS_COORDINATOR"], "10.0.0.9:7000");
    EXPECT_EQ(env["COLOSSUS_JOB_ID"], "job-a");
    EXPECT_EQ(env["COLOSSUS_GENERATION"], "2");
    EXPECT_EQ(env["COLOSSUS_TOKEN_FILE"], "/secrets/token");
    EXPECT_EQ(env["COLOSSUS_RUN_DIR"], dir.path());
    EXPECT_EQ(env["COLOSSUS_NODE_ID"], "node-b");
    // The agent's own CUDA_VISIBLE_DEVICES is replaced by the worker's one GPU.
    EXPECT_EQ(env["CUDA_VISIBLE_DEVICES"], std::to_string(5 + local));
    EXPECT_EQ(env["OMP_NUM_THREADS"], "1");
    EXPECT_EQ(env["USER_VAR"], "from manifest");
    EXPECT_EQ(env["KEEP_ME"], "yes");
    EXPECT_EQ(ReadFile(dir / ("pwd." + std::to_string(rank))), (dir / "work") + "\n");
  }
}

TEST(WorkerSupervisorTest, NoGpuMeansNoCudaVisibleDevices) {
  WorkerEnvInputs in;
  in.gpu_index = -1;
  in.local_world_size = 1;
  auto env = WorkerEnvironment(in);
  for (const auto& [k, v] : env) {
    EXPECT_NE(k, "CUDA_VISIBLE_DEVICES");
    EXPECT_NE(k, "OMP_NUM_THREADS") << "one worker per node keeps every core";
  }
  in.local_world_size = 2;
  in.omp_threads_set = true;
  for (const auto& [k, v] : WorkerEnvironment(in)) EXPECT_NE(k, "OMP_NUM_THREADS");
}

TEST(WorkerSupervisorTest, ExitCodeAndSignalAreReported) {
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  ExitLog exits;
  options.on_exit = exits.Callback();
  auto sup = WorkerSupervisor::Start(
      options, {Shell(0, "exit 0"), Shell(1, "echo dying >&2; exit 3"), Shell(2, "kill -9 $$")});
  ASSERT_TRUE(sup.ok()) << sup.status();
  (*sup)->Wait();
  ASSERT_EQ(exits.by_rank.size(), 3u);
  EXPECT_TRUE(exits.by_rank[0].success());
  EXPECT_EQ(exits.by_rank[1].exit_code, 3);
  EXPECT_EQ(exits.by_rank[1].signal, 0);
  EXPECT_FALSE(exits.by_rank[1].after_stop);
  EXPECT_THAT(exits.by_rank[1].stderr_tail, ElementsAre("dying"));
  EXPECT_THAT(exits.by_rank[1].Describe(), HasSubstr("rank 1 (pid "));
  EXPECT_THAT(exits.by_rank[1].Describe(), HasSubstr("exited with code 3"));
  EXPECT_EQ(exits.by_rank[2].signal, SIGKILL);
  EXPECT_THAT(exits.by_rank[2].Describe(), HasSubstr("killed by signal 9 (SIGKILL)"));
  // Workers() agrees with the callbacks.
  for (const WorkerStatus& w : (*sup)->Workers()) {
    EXPECT_FALSE(w.running);
    EXPECT_EQ(w.exit.pid, w.pid);
    EXPECT_EQ(w.exit.exit_code, exits.by_rank[w.rank].exit_code);
    EXPECT_EQ(w.exit.signal, exits.by_rank[w.rank].signal);
  }
}

TEST(WorkerSupervisorTest, AnExitIsReportedWhileOtherWorkersRun) {
  // Rank 1 fails at once; rank 0 runs on. The report must not wait for rank 0.
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> order;
  options.on_exit = [&](const WorkerExit& e) {
    std::lock_guard lock(mu);
    order.push_back(e.rank);
    cv.notify_all();
  };
  auto sup = WorkerSupervisor::Start(options, {Shell(0, "exec sleep 60"), Shell(1, "exit 7")});
  ASSERT_TRUE(sup.ok()) << sup.status();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return !order.empty(); }));
    EXPECT_THAT(order, ElementsAre(1));
  }
  EXPECT_EQ((*sup)->state(), WorkerSupervisor::State::kRunning);
  (*sup)->Stop(absl::Seconds(5));
  EXPECT_THAT(order, ElementsAre(1, 0));
}

TEST(WorkerSupervisorTest, StopSendsSigtermToTheWholeGroupFirst) {
  TempDir dir;
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  ExitLog exits;
  options.on_exit = exits.Callback();
  // A worker with a child of its own: the stop must reach both.
  const std::string gc = dir / "grandchild";
  auto sup = WorkerSupervisor::Start(
      options, {Shell(0, "sleep 60 & echo $! > " + gc + ".tmp; mv " + gc + ".tmp " + gc +
                             "; wait")});
  ASSERT_TRUE(sup.ok()) << sup.status();
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(gc); }));
  const pid_t grandchild = ReadPid(gc);
  ASSERT_TRUE(ProcessAlive(grandchild));
  (*sup)->Stop(absl::Seconds(30));
  EXPECT_EQ(exits.by_rank[0].signal, SIGTERM);
  EXPECT_TRUE(exits.by_rank[0].after_stop);
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(grandchild); }));
}

TEST(WorkerSupervisorTest, StopEscalatesToSigkillForAWorkerIgnoringSigterm) {
  TempDir dir;
  const std::string ready = dir / "ready";
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  ExitLog exits;
  options.on_exit = exits.Callback();
  auto sup = WorkerSupervisor::Start(
      options, {Shell(0, "trap '' TERM; touch " + ready + "; while :; do sleep 1; done")});
  ASSERT_TRUE(sup.ok()) << sup.status();
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(ready); }));
  (*sup)->RequestStop(absl::Milliseconds(300));
  EXPECT_NE((*sup)->state(), WorkerSupervisor::State::kRunning);
  (*sup)->Wait();
  EXPECT_EQ((*sup)->state(), WorkerSupervisor::State::kExited);
  EXPECT_EQ(exits.by_rank[0].signal, SIGKILL) << exits.by_rank[0].Describe();
  EXPECT_TRUE(exits.by_rank[0].after_stop);
}

TEST(WorkerSupervisorTest, DestroyingTheSupervisorKillsItsWorkers) {
  TempDir dir;
  const std::string pidfile = dir / "pid";
  pid_t pid = -1;
  {
    SupervisorOptions options;
    options.echo = EchoMode::kNone;
    auto sup = WorkerSupervisor::Start(
        options, {Shell(0, "trap '' TERM; echo $$ > " + pidfile + ".tmp; mv " + pidfile +
                               ".tmp " + pidfile + "; while :; do sleep 1; done")});
    ASSERT_TRUE(sup.ok()) << sup.status();
    ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(pidfile); }));
    pid = ReadPid(pidfile);
    ASSERT_TRUE(ProcessAlive(pid));
  }
  // The destructor reaps it: the pid is gone at once, not a zombie.
  EXPECT_FALSE(ProcessAlive(pid));
}

// The "agent" is a forked process running a supervisor; SIGKILL it and check the process
// table: the workers (PDEATHSIG) and their own children (the sentinel) must be gone.
TEST(WorkerSupervisorTest, KillingTheAgentLeavesNoWorkerAlive) {
  TempDir dir;
  const int kWorkers = 3;
  const pid_t agent = fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::vector<WorkerProcessSpec> specs;
    for (int r = 0; r < kWorkers; ++r) {
      const std::string w = dir / ("w." + std::to_string(r));
      const std::string gc = dir / ("gc." + std::to_string(r));
      specs.push_back(Shell(r, "sleep 600 & echo $! > " + gc + ".tmp; mv " + gc + ".tmp " + gc +
                                   "; echo $$ > " + w + ".tmp; mv " + w + ".tmp " + w +
                                   "; wait"));
    }
    SupervisorOptions options;
    options.echo = EchoMode::kNone;
    auto sup = WorkerSupervisor::Start(options, specs);
    if (!sup.ok()) _exit(1);
    for (;;) pause();
  }
  std::vector<pid_t> pids;
  for (int r = 0; r < kWorkers; ++r) {
    for (const char* kind : {"w.", "gc."}) {
      const std::string path = dir / (kind + std::to_string(r));
      ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(path); })) << path;
      pids.push_back(ReadPid(path));
      ASSERT_TRUE(ProcessAlive(pids.back())) << path;
    }
  }
  ASSERT_EQ(kill(agent, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(agent, &status, 0), agent);
  for (pid_t pid : pids) {
    EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(pid); })) << "pid " << pid << " survived";
  }
}

TEST(WorkerSupervisorTest, LogFilesAndPrefixedEcho) {
  TempDir dir;
  const std::string echo_out = dir / "echo.out";
  const std::string echo_err = dir / "echo.err";
  for (EchoMode mode : {EchoMode::kAll, EchoMode::kRank0, EchoMode::kNone}) {
    const std::string run_dir = dir / ("run" + std::to_string(static_cast<int>(mode)));
    int out_fd = open(echo_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err_fd = open(echo_err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(out_fd, 0);
    ASSERT_GE(err_fd, 0);
    SupervisorOptions options;
    options.run_dir = run_dir;
    options.generation = 3;
    options.echo = mode;
    options.echo_stdout_fd = out_fd;
    options.echo_stderr_fd = err_fd;
    // The last line has no newline: it must still reach the log and the echo whole.
    auto sup = WorkerSupervisor::Start(
        options, {Shell(0, "echo hello 0; echo oops 0 >&2; printf 'no newline 0'"),
                  Shell(1, "echo hello 1; echo oops 1 >&2; printf 'no newline 1'")});
    ASSERT_TRUE(sup.ok()) << sup.status();
    (*sup)->Wait();
    close(out_fd);
    close(err_fd);
    for (int r = 0; r < 2; ++r) {
      const std::string s = std::to_string(r);
      const std::string base = run_dir + "/logs/gen3/rank" + s;
      EXPECT_EQ((*sup)->LogPath(r, "out"), base + ".out");
      EXPECT_EQ(ReadFile(base + ".out"), "hello " + s + "\nno newline " + s);
      EXPECT_EQ(ReadFile(base + ".err"), "oops " + s + "\n");
    }
    const std::string out = ReadFile(echo_out);
    const std::string err = ReadFile(echo_err);
    if (mode == EchoMode::kNone) {
      EXPECT_EQ(out, "");
      EXPECT_EQ(err, "");
      continue;
    }
    EXPECT_THAT(out, HasSubstr("[rank 0] hello 0\n"));
    EXPECT_THAT(out, HasSubstr("[rank 0] no newline 0\n"));
    EXPECT_THAT(err, HasSubstr("[rank 0] oops 0\n"));
    EXPECT_THAT(out, Not(HasSubstr("oops")));
    if (mode == EchoMode::kAll) {
      EXPECT_THAT(out, HasSubstr("[rank 1] hello 1\n"));
      EXPECT_THAT(err, HasSubstr("[rank 1] oops 1\n"));
    } else {
      EXPECT_THAT(out, Not(HasSubstr("rank 1")));
      EXPECT_THAT(err, Not(HasSubstr("rank 1")));
    }
  }
}

TEST(WorkerSupervisorTest, NamedLogsCustomPrefixAndLineHook) {
  TempDir dir;
  SupervisorOptions options;
  options.log_dir = dir / "agents";
  std::mutex mu;
  std::vector<std::string> lines;
  options.on_line = [&](int rank, int stream, std::string_view line) {
    std::lock_guard lock(mu);
    lines.push_back(std::to_string(rank) + ":" + std::to_string(stream) + ":" + std::string(line));
  };
  WorkerProcessSpec spec = Shell(5, "echo '[rank 9] from a worker'; echo agent trouble >&2");
  spec.log_name = "agent-node-b";
  spec.echo_prefix = "";
  auto sup = WorkerSupervisor::Start(options, {spec});
  ASSERT_TRUE(sup.ok()) << sup.status();
  (*sup)->Wait();
  EXPECT_THAT(lines, ::testing::UnorderedElementsAre("5:1:[rank 9] from a worker",
                                                     "5:2:agent trouble"));
  EXPECT_EQ((*sup)->LogPath(5, "out"), dir / "agents/agent-node-b.out");
  EXPECT_EQ(ReadFile(dir / "agents/agent-node-b.err"), "agent trouble\n");
}

TEST(WorkerSupervisorTest, StdinDataThenEndOfFileWhenTheSupervisorGoes) {
  TempDir dir;
  const std::string got = dir / "got";
  const std::string eof = dir / "eof";
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  // Reads the first line, then blocks on stdin until end-of-file.
  WorkerProcessSpec spec = Shell(0, "read line; echo \"$line\" > " + got + "; cat > /dev/null; touch " + eof + "; trap '' TERM; sleep 60");
  spec.stdin_data = "s3cret-token\n";
  {
    auto sup = WorkerSupervisor::Start(options, {spec});
    ASSERT_TRUE(sup.ok()) << sup.status();
    ASSERT_TRUE(WaitUntil([&] { return ReadFile(got) == "s3cret-token\n"; }));
    // Held open while the supervisor runs: no end-of-file yet.
    EXPECT_FALSE(std::filesystem::exists(eof));
    (*sup)->RequestStop(absl::Seconds(30));
    EXPECT_FALSE(std::filesystem::exists(eof));
  }  // the destructor kills it
  WorkerProcessSpec early = Shell(0, "cat > " + got);
  early.stdin_data = "abc";
  auto sup = WorkerSupervisor::Start(options, {early});
  ASSERT_TRUE(sup.ok()) << sup.status();
  // The shell waits for end-of-file, which comes only once the supervisor closes stdin.
  EXPECT_FALSE((*sup)->WaitFor(absl::Milliseconds(200)));
  EXPECT_EQ((*sup)->state(), WorkerSupervisor::State::kRunning);
  (*sup)->Stop(absl::Seconds(5));
  EXPECT_EQ(ReadFile(got), "abc");
}

TEST(WorkerSupervisorTest, TailKeepsTheLastLinesOfStderr) {
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  options.tail_lines = 3;
  ExitLog exits;
  options.on_exit = exits.Callback();
  auto sup = WorkerSupervisor::Start(
      options, {Shell(0, "i=0; while [ $i -lt 50 ]; do echo line $i >&2; i=$((i+1)); done; "
                         "echo Traceback: out of memory >&2; exit 1")});
  ASSERT_TRUE(sup.ok()) << sup.status();
  (*sup)->Wait();
  EXPECT_THAT(exits.by_rank[0].stderr_tail,
              ElementsAre("line 48", "line 49", "Traceback: out of memory"));
}

TEST(WorkerSupervisorTest, SpawnErrorsNameTheRankAndTheCause) {
  TempDir dir;
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  WorkerProcessSpec missing = Shell(1, "");
  missing.argv = {"colossus-no-such-program"};
  auto sup = WorkerSupervisor::Start(options, {Shell(0, "exec sleep 60"), missing});
  ASSERT_FALSE(sup.ok());
  EXPECT_EQ(sup.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(sup.status().message(), HasSubstr("rank 1"));
  EXPECT_THAT(sup.status().message(), HasSubstr("colossus-no-such-program"));

  WorkerProcessSpec bad_cwd = Shell(0, "true");
  bad_cwd.cwd = dir / "does-not-exist";
  sup = WorkerSupervisor::Start(options, {bad_cwd});
  ASSERT_FALSE(sup.ok());
  EXPECT_THAT(sup.status().message(), HasSubstr("rank 0: chdir " + bad_cwd.cwd));

  const std::string plain = dir / "not-executable";
  { std::ofstream(plain) << "data\n"; }
  chmod(plain.c_str(), 0644);
  WorkerProcessSpec not_exec = Shell(0, "");
  not_exec.argv = {plain};
  sup = WorkerSupervisor::Start(options, {not_exec});
  ASSERT_FALSE(sup.ok());
  EXPECT_EQ(sup.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(sup.status().message(), HasSubstr("rank 0: execve " + plain));

  options.run_dir = "/proc/no-logs-here";
  sup = WorkerSupervisor::Start(options, {Shell(0, "true")});
  ASSERT_FALSE(sup.ok());
  EXPECT_THAT(sup.status().message(), HasSubstr("/proc/no-logs-here/logs/gen0"));
}

TEST(WorkerSupervisorTest, WorkersDoNotInheritTheAgentsDescriptors) {
  TempDir dir;
  // A descriptor the agent holds without O_CLOEXEC (as a careless library might), at a
  // number no shell redirection would reuse.
  const int opened = open((dir / "agent-private").c_str(), O_WRONLY | O_CREAT, 0600);
  ASSERT_GE(opened, 0);
  const int fd = fcntl(opened, F_DUPFD, 77);
  close(opened);
  ASSERT_EQ(fd, 77);
  SupervisorOptions options;
  options.echo = EchoMode::kNone;
  auto sup = WorkerSupervisor::Start(
      options, {Shell(0, "ls /proc/self/fd > " + dir.path() + "/fds")});
  ASSERT_TRUE(sup.ok()) << sup.status();
  (*sup)->Wait();
  close(fd);
  std::set<std::string> fds;
  std::istringstream in(ReadFile(dir / "fds"));
  for (std::string line; std::getline(in, line);) fds.insert(line);
  EXPECT_EQ(fds.count("77"), 0u) << ReadFile(dir / "fds");
  // 0, 1, 2, and the one ls opened to list the directory.
  EXPECT_EQ(fds.size(), 4u) << ReadFile(dir / "fds");
}

}  // namespace
}  // namespace colossus::launcher
