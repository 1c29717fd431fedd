#include "colossus/launcher/agent_state.h"

#include <string.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "colossus/check.h"
#include "colossus/launcher/exit_codes.h"

namespace colossus::launcher {

using Kind = AgentAction::Kind;

std::string AgentAction::DebugString() const {
  switch (kind) {
    case Kind::kJoin: return absl::StrCat("Join(", generation, ")");
    case Kind::kStartWorkers: return absl::StrCat("StartWorkers(", generation, ")");
    case Kind::kOpenHealth: return absl::StrCat("OpenHealth(", generation, ")");
    case Kind::kSendBeat: return "SendBeat";
    case Kind::kStopWorkers: return absl::StrCat("StopWorkers(", absl::FormatDuration(grace), ")");
    case Kind::kCloseHealth: return "CloseHealth";
    case Kind::kLeave: return absl::StrCat("Leave(", message, ")");
    case Kind::kExitJobEnded: return absl::StrCat("ExitJobEnded(", success ? "success" : "failure", ")");
    case Kind::kExit: return absl::StrCat("Exit(", exit_code, ")");
  }
  return "?";
}

const char* AgentCore::StateName(State state) {
  switch (state) {
    case State::kJoining: return "joining";
    case State::kStarting: return "starting";
    case State::kRunning: return "running";
    case State::kStopping: return "stopping";
    case State::kIdle: return "idle";
    case State::kDone: return "done";
  }
  return "?";
}

AgentCore::AgentCore(Options options) : options_(options) {}

std::vector<AgentAction> AgentCore::Begin(absl::Time now) {
  std::vector<AgentAction> out;
  Rejoin(0, &out);
  return out;
}

void AgentCore::Rejoin(int64_t generation, std::vector<AgentAction>* out) {
  if (health_open_) out->push_back({Kind::kCloseHealth});
  health_open_ = false;
  next_beat_ = reopen_at_ = give_up_at_ = absl::InfiniteFuture();
  state_ = State::kJoining;
  then_ = Then{};
  out->push_back({.kind = Kind::kJoin, .generation = generation});
}

std::vector<AgentAction> AgentCore::OnJoined(int64_t generation,
                                             absl::Duration heartbeat_interval,
                                             absl::Duration node_timeout, absl::Time now) {
  CHECK(state_ == State::kJoining) << StateName(state_);
  generation_ = generation;
  if (heartbeat_interval > absl::ZeroDuration()) heartbeat_interval_ = heartbeat_interval;
  if (node_timeout > absl::ZeroDuration()) node_timeout_ = node_timeout;
  std::vector<AgentAction> out;
  if (interrupted_) {
    // Joined just as the interrupt came: leave again rather than start anything.
    state_ = State::kDone;
    exit_code_ = kExitInterrupted;
    exit_message_ = "interrupted";
    out.push_back({.kind = Kind::kLeave, .message = "agent interrupted"});
    out.push_back({.kind = Kind::kExit, .exit_code = exit_code_, .message = exit_message_});
    return out;
  }
  state_ = State::kStarting;
  out.push_back({.kind = Kind::kStartWorkers, .generation = generation});
  return out;
}

std::vector<AgentAction> AgentCore::OnJoinFailed(const absl::Status& status, absl::Time now) {
  CHECK(state_ == State::kJoining) << StateName(state_);
  state_ = State::kDone;
  std::vector<AgentAction> out;
  if (interrupted_ || status.code() == absl::StatusCode::kCancelled) {
    exit_code_ = kExitInterrupted;
    exit_message_ = "interrupted while joining";
  } else if (status.code() == absl::StatusCode::kFailedPrecondition) {
    // The job has ended (a late or re-joining node): its phase decides the exit code.
    exit_code_ = kExitJobFailed;
    exit_message_ = std::string(status.message());
    out.push_back({.kind = Kind::kExitJobEnded, .success = false, .message = exit_message_});
    return out;
  } else if (status.code() == absl::StatusCode::kUnavailable) {
    exit_code_ = kExitCoordinatorUnreachable;
    exit_message_ = std::string(status.message());
  } else if (status.code() == absl::StatusCode::kUnauthenticated ||
             status.code() == absl::StatusCode::kAlreadyExists ||
             status.code() == absl::StatusCode::kInvalidArgument ||
             status.code() == absl::StatusCode::kNotFound) {
    // Wrong token, job id or a node id already in use: the configuration is wrong.
    exit_code_ = kExitBadManifest;
    exit_message_ = std::string(status.message());
  } else {
    exit_code_ = kExitJobFailed;
    exit_message_ = std::string(status.message());
  }
  out.push_back({.kind = Kind::kExit, .exit_code = exit_code_, .message = exit_message_});
  return out;
}

std::vector<AgentAction> AgentCore::OnWorkersStarted(const absl::Status& status, absl::Time now) {
  CHECK(state_ == State::kStarting) << StateName(state_);
  workers_running_ = status.ok();
  state_ = status.ok() ? State::kRunning : State::kIdle;
  if (interrupted_) {
    return StopThen({.kind = Then::Kind::kExit, .leave = true, .exit_code = kExitInterrupted,
                     .message = "interrupted"},
                    options_.default_grace, now);
  }
  // The first message of the stream is a beat: it carries the spawn failure, if any.
  return {{.kind = Kind::kOpenHealth, .generation = generation_}};
}

std::vector<AgentAction> AgentCore::OnHealthOpened(const absl::Status& status, absl::Time now) {
  if (!status.ok()) return OnHealthEnded(status, now);
  health_open_ = true;
  next_beat_ = now + heartbeat_interval_;
  reopen_at_ = give_up_at_ = absl::InfiniteFuture();
  return {};
}

std::vector<AgentAction> AgentCore::OnHealthEnded(const absl::Status& status, absl::Time now) {
  health_open_ = false;
  next_beat_ = absl::InfiniteFuture();
  if (state_ == State::kDone || state_ == State::kJoining) return {};
  // The coordinator ends the stream itself after a RESTART or an EXIT: while the workers
  // stop for one, the end is expected, and what follows is already decided.
  if (state_ == State::kStopping && then_.kind != Then::Kind::kStay) return {};
  if (status.code() == absl::StatusCode::kFailedPrecondition) {
    // Fenced: the coordinator moved to a newer generation without this node (declared
    // dead while the stream was down). Join again; a job that ended refuses the Join.
    return StopThen({.kind = Then::Kind::kRejoin, .generation = 0}, options_.default_grace, now);
  }
  if (status.code() == absl::StatusCode::kUnauthenticated) {
    return StopThen({.kind = Then::Kind::kExit, .exit_code = kExitBadManifest,
                     .message = std::string(status.message())},
                    options_.default_grace, now);
  }
  // Broken: try again until the node timeout, which is when the coordinator would give
  // up on this node too.
  if (give_up_at_ == absl::InfiniteFuture()) give_up_at_ = now + node_timeout_;
  reopen_at_ = now + options_.reconnect_backoff;
  last_stream_error_ = std::string(status.message());
  return {};
}

std::vector<AgentAction> AgentCore::OnAllWorkersExited(absl::Time now) {
  workers_running_ = false;
  if (state_ == State::kStopping) return Continue(now);
  std::vector<AgentAction> out;
  if (state_ == State::kRunning) {
    state_ = State::kIdle;
    if (health_open_) {
      out.push_back({Kind::kSendBeat});
      next_beat_ = now + heartbeat_interval_;
    }
  }
  return out;
}

std::vector<AgentAction> AgentCore::OnWorkerExited(absl::Time now) {
  if (!health_open_ || state_ == State::kDone) return {};
  // An exit reaches the coordinator at once, not at the next beat.
  next_beat_ = now + heartbeat_interval_;
  return {{Kind::kSendBeat}};
}

std::vector<AgentAction> AgentCore::OnCommand(CommandKind kind, int64_t generation,
                                              absl::Duration grace, bool success,
                                              const std::string& reason, absl::Time now) {
  if (state_ == State::kDone || state_ == State::kJoining) return {};
  if (grace <= absl::ZeroDuration()) grace = options_.default_grace;
  switch (kind) {
    case CommandKind::kStopWorkers:
      if (!workers_running_) {
        if (state_ == State::kStopping) return {};
        state_ = State::kIdle;
        if (!health_open_) return {};
        next_beat_ = now + heartbeat_interval_;
        return {{Kind::kSendBeat}};
      }
      return StopThen({.kind = Then::Kind::kStay}, grace, now);
    case CommandKind::kRestart:
      return StopThen({.kind = Then::Kind::kRejoin, .generation = generation}, grace, now);
    case CommandKind::kExit:
      return StopThen({.kind = Then::Kind::kJobEnded, .success = success, .message = reason},
                      grace, now);
  }
  return {};
}

std::vector<AgentAction> AgentCore::OnInterrupt(int signal, absl::Time now) {
  interrupted_ = true;
  // A held Join is cancelled by the driver; OnJoinFailed / OnJoined finish then.
  if (state_ == State::kJoining || state_ == State::kDone || state_ == State::kStarting) return {};
  const char* name = sigabbrev_np(signal);
  return StopThen({.kind = Then::Kind::kExit, .leave = true, .exit_code = kExitInterrupted,
                   .message = absl::StrCat("interrupted by SIG", name != nullptr ? name : "?")},
                  options_.default_grace, now);
}

std::vector<AgentAction> AgentCore::OnTick(absl::Time now) {
  std::vector<AgentAction> out;
  if (state_ == State::kDone || state_ == State::kJoining || state_ == State::kStarting) return out;
  if (health_open_ && now >= next_beat_) {
    out.push_back({Kind::kSendBeat});
    next_beat_ = now + heartbeat_interval_;
  }
  if (!health_open_ && now >= reopen_at_) {
    reopen_at_ = absl::InfiniteFuture();
    if (now >= give_up_at_) {
      give_up_at_ = absl::InfiniteFuture();
      return StopThen({.kind = Then::Kind::kExit, .exit_code = kExitCoordinatorUnreachable,
                       .message = absl::StrCat("lost the coordinator for longer than the node "
                                               "timeout (", absl::FormatDuration(node_timeout_),
                                               "): ", last_stream_error_)},
                      options_.default_grace, now);
    }
    out.push_back({.kind = Kind::kOpenHealth, .generation = generation_});
  }
  return out;
}

absl::Time AgentCore::NextWakeup() const {
  if (state_ == State::kDone) return absl::InfiniteFuture();
  return health_open_ ? next_beat_ : reopen_at_;
}

// Stops the workers and then does `then`; a stop already under way keeps going with the
// more final of the two plans (exit > job ended > rejoin > stay).
std::vector<AgentAction> AgentCore::StopThen(Then then, absl::Duration grace, absl::Time now) {
  auto rank = [](Then::Kind k) {
    switch (k) {
      case Then::Kind::kStay: return 0;
      case Then::Kind::kRejoin: return 1;
      case Then::Kind::kJobEnded: return 2;
      case Then::Kind::kExit: return 3;
    }
    return 0;
  };
  if (state_ != State::kStopping || rank(then.kind) >= rank(then_.kind)) then_ = then;
  if (!workers_running_) return Continue(now);
  state_ = State::kStopping;
  return {{.kind = Kind::kStopWorkers, .grace = grace}};
}

std::vector<AgentAction> AgentCore::Continue(absl::Time now) {
  const Then then = then_;
  then_ = Then{};
  std::vector<AgentAction> out;
  switch (then.kind) {
    case Then::Kind::kStay:
      state_ = State::kIdle;
      if (health_open_) {
        out.push_back({Kind::kSendBeat});
        next_beat_ = now + heartbeat_interval_;
      }
      break;
    case Then::Kind::kRejoin:
      Rejoin(then.generation, &out);
      break;
    case Then::Kind::kJobEnded:
    case Then::Kind::kExit:
      Finish(&out, then);
      break;
  }
  return out;
}

void AgentCore::Finish(std::vector<AgentAction>* out, const Then& then) {
  if (then.leave) out->push_back({.kind = Kind::kLeave, .message = then.message});
  if (health_open_) out->push_back({Kind::kCloseHealth});
  health_open_ = false;
  next_beat_ = reopen_at_ = give_up_at_ = absl::InfiniteFuture();
  state_ = State::kDone;
  exit_message_ = then.message;
  if (then.kind == Then::Kind::kJobEnded) {
    exit_code_ = then.success ? kExitSuccess : kExitJobFailed;
    out->push_back({.kind = Kind::kExitJobEnded, .success = then.success, .message = then.message});
  } else {
    exit_code_ = then.exit_code;
    out->push_back({.kind = Kind::kExit, .exit_code = then.exit_code, .message = then.message});
  }
}

}  // namespace colossus::launcher
