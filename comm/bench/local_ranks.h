// Running N ranks as local processes for a benchmark: a TCP store server in a process of
// its own, then one forked process per rank. Shared by colossus-bench --nproc and the
// Gloo all-reduce benchmark.
//
// Call it before anything starts a thread or touches CUDA: the children are forked
// from this process, and a fork copies no other thread (a lock one held stays held).
// Every child dies with the caller (PR_SET_PDEATHSIG). The first rank that fails takes
// the others down, since they would only wait for it until their timeouts.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "colossus/comm/tcp_store.h"

namespace colossus::comm::bench {

// Runs run_rank(rank, store_port) in `nproc` child processes; each child exits with
// its return value. Returns 0 when every rank exited 0, else 1 (after printing how
// many failed, prefixed by `program`). Exits with 1 if the store server cannot start.
template <typename RunRank>
int RunLocalRanks(const char* program, int nproc, RunRank run_rank) {
  std::fflush(stdout);
  const pid_t parent = getpid();
  int port_pipe[2];
  if (pipe(port_pipe) != 0) {
    std::fprintf(stderr, "%s: pipe failed\n", program);
    return 1;
  }
  const pid_t server_pid = fork();
  if (server_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(3);
    auto server = TcpStoreServer::Start("127.0.0.1", 0);
    const int port = server.ok() ? (*server)->port() : -1;
    if (write(port_pipe[1], &port, sizeof(port)) != sizeof(port)) _exit(4);
    for (;;) pause();
  }
  int port = -1;
  if (server_pid < 0 || read(port_pipe[0], &port, sizeof(port)) != sizeof(port) || port <= 0) {
    std::fprintf(stderr, "%s: could not start the store server\n", program);
    return 1;
  }
  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(3);
      _exit(run_rank(r, port));
    }
    if (pid < 0) {
      std::fprintf(stderr, "%s: fork failed\n", program);
      for (pid_t p : pids) kill(p, SIGKILL);
      kill(server_pid, SIGKILL);
      return 1;
    }
    pids.push_back(pid);
  }
  int failures = 0;
  for (size_t left = pids.size(); left > 0; --left) {
    int status = 0;
    const pid_t pid = wait(&status);
    if (pid == server_pid) {
      ++left;
      continue;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (failures++ == 0) {
        for (pid_t p : pids) {
          if (p != pid) kill(p, SIGKILL);
        }
      }
    }
  }
  kill(server_pid, SIGKILL);
  waitpid(server_pid, nullptr, 0);
  if (failures) std::fprintf(stderr, "%s: %d rank(s) failed\n", program, failures);
  return failures ? 1 : 0;
}

}  // namespace colossus::comm::bench
