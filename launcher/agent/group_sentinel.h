// GroupSentinel: a small helper process that SIGKILLs the workers' process groups when
// the agent dies without cleaning up (kill -9, a crash, the OOM killer).
//
// PR_SET_PDEATHSIG takes care of each worker itself, but not of the processes a worker
// started (a shell's children, data-loader helpers): those would be re-parented to init
// and live on. The sentinel is forked without PDEATHSIG, in a process group of its own,
// ignoring SIGINT/SIGTERM/SIGHUP, and reads pgids from a pipe: "watch" when a worker
// starts, "forget" once the supervisor has cleaned up that worker's group itself. When
// the pipe reaches end-of-file with groups still watched (the agent died), it sends
// SIGKILL to each and exits. A clean shutdown (the destructor) tells it to exit without
// killing anything.
//
// Limit: a pgid stays reserved while any process is in the group, so the kill reaches
// only the worker's own descendants unless the group already emptied and the number was
// handed to a new group leader in the milliseconds between the agent's death and the
// sentinel's kill.
//
// Thread safety: Watch/Forget may be called from one thread at a time.
#pragma once

#include <sys/types.h>

#include <memory>

#include "absl/status/statusor.h"
#include "unique_fd.h"

namespace colossus::launcher::internal {

class GroupSentinel {
 public:
  static absl::StatusOr<std::unique_ptr<GroupSentinel>> Start();
  ~GroupSentinel();

  GroupSentinel(const GroupSentinel&) = delete;
  GroupSentinel& operator=(const GroupSentinel&) = delete;

  void Watch(pid_t pgid);
  void Forget(pid_t pgid);

  pid_t pid() const { return pid_; }

 private:
  GroupSentinel(pid_t pid, UniqueFd pipe) : pid_(pid), pipe_(std::move(pipe)) {}
  void Send(int32_t message);

  pid_t pid_ = -1;
  UniqueFd pipe_;  // write end; the sentinel holds the read end
};

}  // namespace colossus::launcher::internal
