// The plan colossus-launch carries out for a manifest: the coordinator's options and one
// agent command line per node. Pure functions of the manifest, so --dry-run prints
// exactly what a real launch would run, and tests check it without starting anything.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "colossus/launcher/coordinator.h"
#include "colossus/launcher/manifest.h"

namespace colossus::launcher {

struct AgentLaunch {
  std::string node;                // the node's name
  std::vector<std::string> argv;   // what runs here: the agent itself, or ssh
  bool remote = false;             // the token goes to stdin ("--token-stdin")
};

struct LaunchPlanInputs {
  std::string self;                // absolute path of colossus-launch
  std::string coordinator;         // "host:port" the agents dial
  std::string token_file;          // for local agents (and the workers)
  std::vector<std::string> extra_worker_args;  // after `--` on the command line
  // Overrides of worker.log from the command line ("" keeps the manifest's).
  std::string log = {};
};

// The coordinator that colossus-launch starts in-process (coordinator.start: here):
// job id = job.name, listen address, run_dir, min/max nodes (elastic, or every node), the
// settle time (elastic only), restart and health policy, TLS paths.
CoordinatorOptions CoordinatorOptionsFor(const Manifest& m, const std::string& token);

// One agent per node: `<self> --agent --coordinator ... -- <worker command>`, run over
// `ssh [user/port] host '<quoted command>'` for remote nodes.
std::vector<AgentLaunch> PlanAgents(const Manifest& m, const LaunchPlanInputs& in);

// A word quoted for a POSIX shell (ssh hands the remote command to the login shell):
// left bare when it holds only safe characters, else in single quotes.
std::string ShellQuote(std::string_view word);
std::string ShellJoin(const std::vector<std::string>& words);

}  // namespace colossus::launcher
