// The colossus-coordinator binary as a process: the listening line, exit statuses, event
// lines on stderr, and a coordinator killed with SIGKILL and started again on its run
// directory.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "coordinator_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::HasSubstr;
using namespace testing;  // NOLINT: the helpers of coordinator_test_util.h

const char* const kBinary = COLOSSUS_BINARY_DIR "/launcher/coordinator/colossus-coordinator";

// A running colossus-coordinator with its stdout piped and stderr in a file.
class Process {
 public:
  Process(const std::vector<std::string>& args, const std::string& stderr_path) {
    int out[2];
    EXPECT_EQ(pipe(out), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(err, 2);
      close(out[0]);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(kBinary));
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(kBinary, argv.data());
      _exit(127);
    }
    close(out[1]);
    stdout_fd_ = out[0];
  }
  ~Process() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }

  // The first stdout line, waiting up to 20 s ("" on timeout or EOF).
  std::string FirstLine() {
    std::string line;
    while (true) {
      pollfd p{stdout_fd_, POLLIN, 0};
      if (poll(&p, 1, 20'000) <= 0) return "";
      char c;
      if (read(stdout_fd_, &c, 1) != 1) return "";
      if (c == '\n') return line;
      line.push_back(c);
    }
  }
  void Signal(int sig) { kill(pid_, sig); }
  // Exit status (or 128 + signal).
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  bool reaped_ = false;
};

std::vector<std::string> Args(const std::string& run_dir, const std::string& token_file) {
  return {"--job-id", kJob, "--run-dir", run_dir, "--token-file", token_file, "--linger-ms", "0",
          "--min-nodes", "1"};
}

// The port of "colossus-coordinator: listening on 127.0.0.1:PORT job=job-under-test
// generation=G", or -1 when the line is not that.
int PortOf(const std::string& line) {
  const std::string prefix = "colossus-coordinator: listening on 127.0.0.1:";
  if (line.rfind(prefix, 0) != 0) return -1;
  size_t space = line.find(' ', prefix.size());
  if (space == std::string::npos) return -1;
  if (line.substr(space).rfind(" job=job-under-test generation=", 0) != 0) return -1;
  return std::atoi(line.substr(prefix.size(), space - prefix.size()).c_str());
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class CoordinatorBinary : public ::testing::Test {
 protected:
  void SetUp() override {
    token_file_ = dir_.path() + "/token";
    std::ofstream(token_file_) << kToken << "\n";  // the newline is not part of the token
    run_dir_ = dir_.path() + "/run";
    stderr_ = dir_.path() + "/stderr";
  }
  TempDir dir_;
  std::string token_file_, run_dir_, stderr_;
};

TEST_F(CoordinatorBinary, BadFlagsExitTwo) {
  EXPECT_EQ(Process({"--job-id", "x"}, stderr_).Wait(), 2);
  std::vector<std::string> args = Args(run_dir_, token_file_);
  args.insert(args.end(), {"--max-nodes", "0", "--node-timeout-ms", "10", "--heartbeat-interval-ms", "1000"});
  EXPECT_EQ(Process(args, stderr_).Wait(), 2);
  EXPECT_THAT(Slurp(stderr_), HasSubstr("node_timeout"));
}

TEST_F(CoordinatorBinary, KilledAndRestartedResumesThenStopExitsThree) {
  {
    Process p(Args(run_dir_, token_file_), stderr_);
    int port = PortOf(p.FirstLine());
    ASSERT_GT(port, 0);
    auto stub = Connect(port);
    v1::JoinResponse join;
    ASSERT_TRUE(stub->Join(Ctx().get(), JoinRequest("a", 2), &join).ok());
    for (int rank = 0; rank < 2; ++rank) {
      v1::ShardReport r;
      *r.mutable_header() = Header(1);
      r.set_step(7);
      r.set_rank(rank);
      r.set_num_shards(2);
      r.set_directory("/ckpt/7");
      r.set_path(absl::StrCat("/ckpt/7/", rank));
      v1::ShardAck ack;
      ASSERT_TRUE(stub->ReportShard(Ctx().get(), r, &ack).ok());
    }
    // Events are logged from a writer thread: the commit's line shows up shortly.
    for (int i = 0; i < 500 && Slurp(stderr_).find("event CHECKPOINT_COMMITTED generation=1 step=7") ==
                                   std::string::npos; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_THAT(Slurp(stderr_), HasSubstr("event CHECKPOINT_COMMITTED generation=1 step=7"));
    p.Signal(SIGKILL);  // no goodbye: only the journal survives
    EXPECT_EQ(p.Wait(), 128 + SIGKILL);
  }
  Process p(Args(run_dir_, token_file_), stderr_);
  std::string line = p.FirstLine();
  int port = PortOf(line);
  ASSERT_GT(port, 0) << line;
  EXPECT_THAT(line, HasSubstr("generation=1"));
  auto stub = Connect(port);
  v1::GetLatestCheckpointRequest request;
  *request.mutable_header() = Header();
  v1::CheckpointRef latest;
  ASSERT_TRUE(stub->GetLatestCheckpoint(Ctx().get(), request, &latest).ok());
  EXPECT_EQ(latest.step(), 7);
  v1::StopJobRequest stop;
  *stop.mutable_header() = Header();
  stop.set_reason("test done");
  v1::StopJobResponse stopped;
  ASSERT_TRUE(stub->StopJob(Ctx().get(), stop, &stopped).ok());
  EXPECT_EQ(p.Wait(), 3);
  std::string err = Slurp(stderr_);
  EXPECT_THAT(err, HasSubstr("replayed"));
  EXPECT_THAT(err, HasSubstr("event JOB_ENDED"));
}

TEST_F(CoordinatorBinary, AllRanksSucceededExitsZeroAndSigtermExitsFour) {
  {
    Process p(Args(run_dir_, token_file_), stderr_);
    int port = PortOf(p.FirstLine());
    ASSERT_GT(port, 0);
    auto stub = Connect(port);
    v1::JoinResponse join;
    ASSERT_TRUE(stub->Join(Ctx().get(), JoinRequest("a", 1), &join).ok());
    auto ctx = Ctx();
    auto stream = stub->Health(ctx.get());
    v1::NodeHealth done;
    *done.mutable_header() = Header(1);
    done.set_node_id("a");
    v1::RankHealth* r = done.add_ranks();
    r->set_local_rank(0);
    r->set_state(v1::RANK_STATE_SUCCEEDED);
    r->set_step(100);
    ASSERT_TRUE(stream->Write(done));
    v1::Command exit;
    ASSERT_TRUE(stream->Read(&exit));
    EXPECT_EQ(exit.kind(), v1::Command::KIND_EXIT);
    EXPECT_TRUE(exit.success());
    EXPECT_EQ(p.Wait(), 0);
  }
  TempDir other;
  Process p(Args(other.path(), token_file_), stderr_);
  ASSERT_GT(PortOf(p.FirstLine()), 0);
  p.Signal(SIGTERM);
  EXPECT_EQ(p.Wait(), 4);
}

}  // namespace
}  // namespace colossus::launcher
