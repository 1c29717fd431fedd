// colossus-launch with a node marked remote: its agent is started over SSH, against a
// private sshd on a loopback address (Debian's openssh-server; a key made for the test).
// Skips, naming the reason, where /usr/sbin/sshd is not installed. Label slow.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
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

const std::string kLaunch = COLOSSUS_BINARY_DIR "/launcher/colossus-launch";
const std::string kWorker = TEST_WORKER_PATH;
constexpr char kSshHost[] = "127.0.0.2";

pid_t Spawn(const std::vector<std::string>& args, const std::string& out, bool own_group) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (own_group) setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    freopen(out.c_str(), "w", stdout);
    dup2(1, 2);
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int RunToEnd(const std::vector<std::string>& args, const std::string& out) {
  const pid_t pid = Spawn(args, out, false);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int FreePort() {
  // sshd binds it right after; a collision only fails this test's setup, loudly.
  return 20000 + static_cast<int>(getpid() % 20000);
}

class RemoteLaunchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists("/usr/sbin/sshd") || !std::filesystem::exists("/usr/bin/ssh-keygen")) {
      GTEST_SKIP() << "openssh-server is not installed (apt-get install openssh-server)";
    }
    ssh_dir_ = dir_ / "ssh";
    std::filesystem::create_directories(ssh_dir_);
    chmod(ssh_dir_.c_str(), 0700);
    std::filesystem::create_directories("/run/sshd");
    ASSERT_EQ(RunToEnd({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh_dir_ + "/host"}, dir_ / "kg1"), 0);
    ASSERT_EQ(RunToEnd({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh_dir_ + "/client"}, dir_ / "kg2"), 0);
    std::filesystem::copy_file(ssh_dir_ + "/client.pub", ssh_dir_ + "/authorized_keys");
    port_ = FreePort();
    std::ofstream(ssh_dir_ + "/sshd_config")
        << "Port " << port_ << "\nListenAddress " << kSshHost << "\nHostKey " << ssh_dir_ << "/host\n"
        << "PidFile " << ssh_dir_ << "/sshd.pid\nAuthorizedKeysFile " << ssh_dir_ << "/authorized_keys\n"
        << "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\n";
    sshd_ = Spawn({"/usr/sbin/sshd", "-D", "-e", "-f", ssh_dir_ + "/sshd_config"}, dir_ / "sshd.log", true);
    ASSERT_TRUE(WaitUntil([&] { return RunToEnd(Ssh({"true"}), dir_ / "probe") == 0; }, 20))
        << ReadFile(dir_ / "sshd.log") << ReadFile(dir_ / "probe");
  }
  void TearDown() override {
    if (sshd_ > 0) {
      kill(sshd_, SIGTERM);
      waitpid(sshd_, nullptr, 0);
    }
  }

  std::vector<std::string> SshCommand() const {
    return {"/usr/bin/ssh", "-i", ssh_dir_ + "/client", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"};
  }
  std::vector<std::string> Ssh(const std::vector<std::string>& command) const {
    std::vector<std::string> argv = SshCommand();
    argv.insert(argv.end(), {"-p", std::to_string(port_), absl::StrCat("root@", kSshHost)});
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }

  std::string WriteManifest(const std::string& worker_args) {
    std::string ssh = "[";
    for (const std::string& w : SshCommand()) absl::StrAppend(&ssh, ssh.size() > 1 ? ", " : "", "\"", w, "\"");
    ssh += "]";
    const std::string path = dir_ / "job.yaml";
    std::ofstream(path) << "version: 1\njob:\n  name: remote\n  run_dir: " << run_dir() << "\n"
                        << "nodes:\n"
                        << "  - {name: a, host: 127.0.0.1, gpus: 0, workers: 1}\n"
                        << "  - {name: b, host: " << kSshHost << ", remote: true, gpus: 0, workers: 2}\n"
                        << "worker:\n  command: " << kWorker << " " << worker_args << "\n"
                        << "ssh:\n  command: " << ssh << "\n  user: root\n  port: " << port_ << "\n"
                        << "health:\n  heartbeat_interval: 200ms\n  node_timeout: 5s\n";
    return path;
  }
  std::string run_dir() const { return dir_ / "run"; }

  TempDir dir_;
  std::string ssh_dir_;
  int port_ = 0;
  pid_t sshd_ = -1;
};

TEST_F(RemoteLaunchTest, RemoteNodeIsStartedOverSshAndTheJobCompletes) {
  const std::string out = dir_ / "launch.out";
  EXPECT_EQ(RunToEnd({kLaunch, WriteManifest("--steps 2 --store-check"), "--no-status"}, out), 0) << ReadFile(out);
  // Node b's agent got the token over ssh's stdin and kept it in a private file.
  const std::string token_file = run_dir() + "/tokens/b.token";
  ASSERT_TRUE(std::filesystem::exists(token_file)) << ReadFile(out);
  EXPECT_EQ(std::filesystem::status(token_file).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(ReadFile(token_file), ReadFile(run_dir() + "/token"));
  for (int r : {1, 2}) {
    const std::string env = ReadFile(absl::StrCat(run_dir(), "/workers/gen1.rank", r, ".env"));
    EXPECT_THAT(env, HasSubstr("COLOSSUS_NODE_ID=b"));
    EXPECT_THAT(env, HasSubstr("SSH_CONNECTION="));  // it really ran under sshd
  }
  EXPECT_THAT(ReadFile(out), HasSubstr("[rank 2] worker rank 2 of 3"));
}

TEST_F(RemoteLaunchTest, CtrlCStopsTheRemoteWorkersToo) {
  const std::string out = dir_ / "launch.out";
  const pid_t launch = Spawn({kLaunch, WriteManifest("--hold-generation 1"), "--no-status"}, out, true);
  std::vector<pid_t> workers;
  for (int r = 0; r < 3; ++r) {
    const std::string path = absl::StrCat(run_dir(), "/workers/gen1.rank", r, ".pid");
    ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(path); }, 30)) << ReadFile(out);
    workers.push_back(testing::ReadPid(path));
  }
  kill(launch, SIGINT);
  int status = 0;
  ASSERT_TRUE(WaitUntil([&] { return waitpid(launch, &status, WNOHANG) == launch; }, 60)) << ReadFile(out);
  EXPECT_EQ(WEXITSTATUS(status), 130) << ReadFile(out);
  for (pid_t w : workers) EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(w); })) << w;
}

TEST_F(RemoteLaunchTest, KillingTheLauncherStopsTheRemoteNodeToo) {
  // No StopJob this time: the remote agent learns it from its stdin (the ssh session)
  // reaching end-of-file, and stops its workers.
  const std::string out = dir_ / "launch.out";
  const pid_t launch = Spawn({kLaunch, WriteManifest("--hold-generation 1"), "--no-status"}, out, true);
  std::vector<pid_t> workers;
  for (int r = 0; r < 3; ++r) {
    const std::string path = absl::StrCat(run_dir(), "/workers/gen1.rank", r, ".pid");
    ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(path); }, 30)) << ReadFile(out);
    workers.push_back(testing::ReadPid(path));
  }
  kill(launch, SIGKILL);
  waitpid(launch, nullptr, 0);
  for (pid_t w : workers) EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(w); }, 30)) << w;
}

}  // namespace
}  // namespace colossus::launcher
