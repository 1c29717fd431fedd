#include "launch_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossus::launcher {
namespace {

std::string DurationFlag(absl::Duration d) {
  return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
}

}  // namespace

std::string ShellQuote(std::string_view word) {
  if (word.empty()) return "''";
  bool safe = true;
  for (char c : word) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '/' || c == ':' || c == ',' ||
                    c == '=' || c == '+' || c == '@' || c == '%';
    safe = safe && ok;
  }
  if (safe) return std::string(word);
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

std::string ShellJoin(const std::vector<std::string>& words) {
  std::vector<std::string> quoted;
  for (const std::string& w : words) quoted.push_back(ShellQuote(w));
  return absl::StrJoin(quoted, " ");
}

CoordinatorOptions CoordinatorOptionsFor(const Manifest& m, const std::string& token) {
  CoordinatorOptions o;
  o.job_id = m.name;
  o.listen_address = m.coordinator.listen.ToString();
  o.run_dir = m.run_dir;
  // Running a job's command again continues it from its latest committed checkpoint,
  // whether it had finished, failed or been stopped.
  o.relaunch_ended_job = true;
  o.token = token;
  const int n = static_cast<int>(m.nodes.size());
  if (m.restart.elastic.enabled) {
    o.min_nodes = m.restart.elastic.min_nodes;
    o.max_nodes = m.restart.elastic.max_nodes;
    o.settle = m.restart.elastic.settle;
  } else {
    // Every node, formed the moment the last one joins.
    o.min_nodes = o.max_nodes = n;
    o.settle = absl::ZeroDuration();
  }
  o.join_timeout = m.health.join_timeout;
  o.heartbeat_interval = m.health.heartbeat_interval;
  o.node_timeout = m.health.node_timeout;
  o.hang_timeout = m.health.hang_timeout;
  o.max_restarts = m.restart.max_restarts;
  o.restart_backoff = m.restart.backoff;
  if (m.coordinator.tls.enabled) {
    o.tls_cert_path = m.coordinator.tls.cert;
    o.tls_key_path = m.coordinator.tls.key;
    o.tls_client_ca_path = m.coordinator.tls.client_ca;
  }
  return o;
}

std::vector<AgentLaunch> PlanAgents(const Manifest& m, const LaunchPlanInputs& in) {
  std::vector<AgentLaunch> plan;
  const std::string log = !in.log.empty() ? in.log : std::string(LogModeName(m.worker.log));
  for (const NodeSpec& node : m.nodes) {
    std::vector<std::string> agent = {in.self, "--agent",
                                      "--coordinator", in.coordinator,
                                      "--job-id", m.name,
                                      "--node-id", node.name,
                                      "--address", node.address,
                                      "--workers", absl::StrCat(node.workers),
                                      "--gpus", node.gpus.empty() ? "none" : absl::StrJoin(node.gpus, ","),
                                      "--run-dir", m.run_dir,
                                      "--cwd", m.worker.cwd,
                                      "--log", log,
                                      "--join-timeout", DurationFlag(m.health.join_timeout),
                                      // A cut link noticed within 2/3 of the node timeout.
                                      "--keepalive", DurationFlag(std::clamp(m.health.node_timeout / 3,
                                                                             absl::Seconds(1), absl::Seconds(10)))};
    if (node.remote) {
      agent.push_back("--token-stdin");
    } else {
      agent.insert(agent.end(), {"--token-file", in.token_file});
    }
    const TlsSpec& tls = m.coordinator.tls;
    if (tls.enabled) {
      if (!tls.ca.empty()) agent.insert(agent.end(), {"--tls-ca", tls.ca});
      if (!tls.client_cert.empty()) {
        agent.insert(agent.end(), {"--tls-cert", tls.client_cert, "--tls-key", tls.client_key});
      }
    }
    // worker.env first, the node's env after it (it wins, as the manifest says).
    for (const auto& [k, v] : m.worker.env) agent.insert(agent.end(), {"--env", absl::StrCat(k, "=", v)});
    for (const auto& [k, v] : node.env) agent.insert(agent.end(), {"--env", absl::StrCat(k, "=", v)});
    agent.push_back("--");
    agent.insert(agent.end(), m.worker.command.begin(), m.worker.command.end());
    agent.insert(agent.end(), in.extra_worker_args.begin(), in.extra_worker_args.end());

    AgentLaunch launch;
    launch.node = node.name;
    launch.remote = node.remote;
    if (!node.remote) {
      launch.argv = std::move(agent);
    } else {
      launch.argv = m.ssh.command;
      if (m.ssh.port > 0) launch.argv.insert(launch.argv.end(), {"-p", absl::StrCat(m.ssh.port)});
      if (!m.ssh.user.empty()) launch.argv.insert(launch.argv.end(), {"-l", m.ssh.user});
      launch.argv.push_back(node.host);
      launch.argv.push_back(ShellJoin(agent));
    }
    plan.push_back(std::move(launch));
  }
  return plan;
}

}  // namespace colossus::launcher
