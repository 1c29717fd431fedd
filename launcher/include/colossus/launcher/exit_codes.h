// Exit codes of colossus-launch (the launcher, `--agent`, `status` and `stop`), also
// documented in launcher/README.md. Scripts and schedulers branch on them, so they never
// change meaning.
#pragma once

namespace colossus::launcher {

// The job completed: every rank exited 0.
inline constexpr int kExitSuccess = 0;
// The job failed: a worker failed with the restart budget spent, a node was lost with no
// restarts left, or the workers could not be started.
inline constexpr int kExitJobFailed = 1;
// Bad manifest, bad flags or a bad token file; nothing was started.
inline constexpr int kExitBadManifest = 2;
// The job was stopped by a user (`colossus-launch stop`, StopJob) before it completed.
inline constexpr int kExitStopped = 3;
// The coordinator could not be reached (or was lost for longer than the node timeout).
inline constexpr int kExitCoordinatorUnreachable = 4;
// Interrupted here by SIGINT or SIGTERM (Ctrl-C): the job was stopped on every node.
// 128 + SIGINT, the shell's convention for a process ended by Ctrl-C.
inline constexpr int kExitInterrupted = 130;

}  // namespace colossus::launcher
