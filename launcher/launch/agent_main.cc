// `colossus-launch --agent`: one node agent (see colossus/launcher/agent.h).
//
//   colossus-launch --agent --coordinator HOST:PORT --job-id ID --token-file F
//       [--node-id N] [--address A] [--workers N] [--gpus 0,1|4|none] [--run-dir D]
//       [--cwd D] [--env K=V]... [--log all|rank0|none] [--stop-grace 10s]
//       [--join-timeout 5m] [--keepalive 10s] [--master-port P] [--tls-ca F [--tls-cert F --tls-key F]]
//       -- <worker command>
//
// Node identity falls back to COLOSSUS_* and SLURM_* (node_identity.h), so under Slurm
// `srun colossus-launch --agent --coordinator :29400 --job-id J --token-file F -- cmd`
// is enough. --token-stdin reads the token from the first line of stdin instead (how
// colossus-launch hands it over ssh) and then treats end-of-file on stdin as the
// launcher gone: the agent stops its workers and leaves.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "colossus/launcher/agent.h"
#include "colossus/launcher/exit_codes.h"
#include "colossus/launcher/manifest.h"
#include "launch_main.h"

namespace colossus::launcher {
namespace {

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "colossus-launch --agent: %s\n", message.c_str());
  return code;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the token file ", path));
  std::string token;
  std::getline(in, token);
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("the token file ", path, " is empty"));
  return token;
}

// The token handed over stdin, kept in a 0600 file under the run directory for the
// workers (COLOSSUS_TOKEN_FILE names a file, never the token).
absl::StatusOr<std::string> StoreToken(const std::string& run_dir, const std::string& node,
                                       const std::string& token) {
  const std::string dir = run_dir + "/tokens";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  chmod(dir.c_str(), 0700);
  const std::string path = absl::StrCat(dir, "/", node, ".token");
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path, ": ", strerror(errno)));
  const std::string line = token + "\n";
  const bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("cannot write ", path));
  return path;
}

}  // namespace

int AgentMain(int argc, char** argv) {
  std::vector<std::string> command = CommandAfterDoubleDash(&argc, argv);
  CLI::App app{"colossus-launch --agent: the node agent (joins the coordinator, runs this node's workers)"};
  bool agent_flag = false;
  NodeIdentityFlags id_flags;
  std::string job_id, token_file, run_dir = ".", cwd, log = "all", stop_grace = "10s", keepalive = "10s",
              join_timeout = "0ms", tls_ca, tls_cert, tls_key;
  bool token_stdin = false;
  int master_port = 0;
  std::vector<std::string> env;
  app.add_flag("--agent", agent_flag, "run as a node agent");
  app.add_option("--coordinator", id_flags.coordinator, "HOST:PORT of the coordinator (:PORT under Slurm: the first node)");
  app.add_option("--job-id", job_id, "the job's id (the manifest's job.name)");
  app.add_option("--token-file", token_file, "file holding the job's token");
  app.add_flag("--token-stdin", token_stdin, "read the token from stdin's first line; end-of-file later means stop");
  app.add_option("--node-id", id_flags.node_id, "this node's id (default: host name or Slurm's)");
  app.add_option("--address", id_flags.address, "the address other nodes reach this one at");
  app.add_option("--workers", id_flags.workers, "worker processes on this node");
  app.add_option("--gpus", id_flags.gpus, "GPU indices (0,1,2), a count, or none");
  app.add_option("--run-dir", run_dir, "logs and status files go under it");
  app.add_option("--cwd", cwd, "the workers' working directory");
  app.add_option("--env", env, "KEY=VALUE for the workers (repeatable)");
  app.add_option("--log", log, "which ranks' output this agent echoes: all, rank0, none");
  app.add_option("--stop-grace", stop_grace, "SIGTERM to SIGKILL grace when stopping workers");
  app.add_option("--join-timeout", join_timeout, "how long a Join is held (0: the coordinator's)");
  app.add_option("--keepalive", keepalive, "ping the coordinator when quiet this long; a link silent twice that is lost");
  app.add_option("--master-port", master_port, "MASTER_PORT (default: node 0 picks a free one)");
  app.add_option("--tls-ca", tls_ca, "CA certificate the coordinator's is checked against");
  app.add_option("--tls-cert", tls_cert, "client certificate");
  app.add_option("--tls-key", tls_key, "client key");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitBadManifest;
  }
  if (command.empty()) return Fail(kExitBadManifest, "no worker command: give it after --");
  if (job_id.empty()) job_id = ProcessEnvironment()("COLOSSUS_JOB_ID").value_or("");
  if (job_id.empty()) return Fail(kExitBadManifest, "no job id: give --job-id or set COLOSSUS_JOB_ID");
  if (token_file.empty() && !token_stdin) token_file = ProcessEnvironment()("COLOSSUS_TOKEN_FILE").value_or("");

  absl::StatusOr<NodeIdentity> id = ResolveNodeIdentity(id_flags, ProcessEnvironment(), LocalHostname());
  if (!id.ok()) return Fail(kExitBadManifest, std::string(id.status().message()));

  EchoMode echo;
  if (log == "all") {
    echo = EchoMode::kAll;
  } else if (log == "rank0") {
    echo = EchoMode::kRank0;
  } else if (log == "none") {
    echo = EchoMode::kNone;
  } else {
    return Fail(kExitBadManifest, absl::StrCat("--log ", log, ": expected all, rank0 or none"));
  }
  absl::StatusOr<absl::Duration> grace = ParseManifestDuration(stop_grace);
  if (!grace.ok()) return Fail(kExitBadManifest, absl::StrCat("--stop-grace ", stop_grace, ": ", grace.status().message()));
  absl::StatusOr<absl::Duration> ping = ParseManifestDuration(keepalive);
  if (!ping.ok()) return Fail(kExitBadManifest, absl::StrCat("--keepalive ", keepalive, ": ", ping.status().message()));
  absl::StatusOr<absl::Duration> join = ParseManifestDuration(join_timeout);
  if (!join.ok()) return Fail(kExitBadManifest, absl::StrCat("--join-timeout ", join_timeout, ": ", join.status().message()));

  run_dir = std::filesystem::absolute(run_dir).lexically_normal().string();
  std::string token;
  if (token_stdin) {
    if (!std::getline(std::cin, token) || absl::StripAsciiWhitespace(token).empty()) {
      return Fail(kExitBadManifest, "--token-stdin: no token on stdin");
    }
    token = std::string(absl::StripAsciiWhitespace(token));
    absl::StatusOr<std::string> path = StoreToken(run_dir, id->node_id, token);
    if (!path.ok()) return Fail(kExitBadManifest, std::string(path.status().message()));
    token_file = *path;
  } else {
    if (token_file.empty()) {
      return Fail(kExitBadManifest, "no token: give --token-file, --token-stdin or set COLOSSUS_TOKEN_FILE");
    }
    absl::StatusOr<std::string> t = ReadToken(token_file);
    if (!t.ok()) return Fail(kExitBadManifest, std::string(t.status().message()));
    token = *t;
    token_file = std::filesystem::absolute(token_file).string();
  }

  AgentOptions options;
  options.client.channel.target = id->coordinator;
  // The coordinator permits pings every 5 s and more often with unlimited strikes; a cut
  // link is noticed within keepalive_time + keepalive_timeout, before the node timeout
  // (30 s by default) when keepalive is 10 s.
  options.client.channel.keepalive_time = *ping;
  options.client.channel.keepalive_timeout = *ping;
  options.client.channel.tls.ca_cert_file = tls_ca;
  options.client.channel.tls.client_cert_file = tls_cert;
  options.client.channel.tls.client_key_file = tls_key;
  options.client.token = token;
  options.client.job_id = job_id;
  // A retried call must not outlast the time the coordinator gives a silent node.
  options.client.retry.max_elapsed = absl::Seconds(10);
  options.identity = *id;
  options.command = command;
  for (const std::string& kv : env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Fail(kExitBadManifest, absl::StrCat("--env ", kv, ": expected KEY=VALUE"));
    }
    options.env.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  options.cwd = cwd;
  options.run_dir = run_dir;
  options.token_file = token_file;
  options.echo = echo;
  options.stop_grace = *grace;
  options.join_timeout = *join;
  options.master_port = master_port;

  // Signals are taken by one thread (sigwait) and turned into Interrupt: block them
  // before any other thread exists so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<NodeAgent>> agent = NodeAgent::Create(std::move(options));
  if (!agent.ok()) return Fail(kExitBadManifest, std::string(agent.status().message()));
  NodeAgent* raw = agent->get();
  std::thread([raw, signals] {
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) == 0) raw->Interrupt(sig);
    }
  }).detach();
  if (token_stdin) {
    // The launcher holds our stdin open for as long as it runs (over ssh: the session).
    std::thread([raw] {
      char buf[256];
      while (read(0, buf, sizeof(buf)) > 0) {
      }
      raw->Interrupt(SIGHUP);
    }).detach();
  }
  const int code = (*agent)->Run();
  // The detached threads may still hold `raw`: leave without destroying the agent.
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

}  // namespace colossus::launcher
