// Multi-process test harness: runs one function per rank in forked child processes
// that share a TcpStoreServer, which runs in a process of its own (the test process
// stays single-threaded while it forks; see multiproc.cc).
//
// Every child exits: it reports its absl::Status through a pipe and _exit()s; it dies
// with the parent (PR_SET_PDEATHSIG); and the parent SIGKILLs whatever is still running
// at the deadline, and reaps everything before returning (no zombies, no orphans).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "colossus/comm/store.h"

namespace colossus::comm::testing {

struct RankEnv {
  int rank = 0;
  int size = 0;
  std::shared_ptr<Store> store;  // a TcpStore client of the shared server
};

struct ChildResult {
  int rank = 0;
  bool exited = false;      // exited normally (exit_code valid)
  int exit_code = -1;
  int signal = 0;           // the signal that ended it, if any
  bool timed_out = false;   // still running at the deadline: the parent killed it
  std::string report;       // the child's Status text ("OK" on success)

  bool ok() const { return exited && exit_code == 0; }
  std::string Describe() const;
};

using RankFn = std::function<absl::Status(const RankEnv&)>;

// Runs fn(rank) for rank in [0, n) in n child processes and waits for all of them,
// at most `deadline`.
std::vector<ChildResult> RunRanks(int n, const RankFn& fn, absl::Duration deadline);

// EXPECTs every child to have exited with status OK, naming each one that did not.
void ExpectAllOk(const std::vector<ChildResult>& results);

}  // namespace colossus::comm::testing
