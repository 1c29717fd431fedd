// colossus-coordinator-load: the coordinator's scale benchmark (issue 8, "Scale").
//
// Starts colossus-coordinator as a child process (min_nodes = max_nodes = N, settle 0)
// and drives it with N simulated node agents x R ranks over real gRPC on loopback, one
// TCP connection per agent up to --max-connections:
//   (a) rendezvous: every agent Joins; time until all N are answered, and from the last
//       Join sent to the last assignment received; every assignment checked (nodes in
//       node_id order, ranks contiguous);
//   (b) the NCCL id: all N*R ranks StoreWait on one GENERATION-scope key, then one rank
//       Sets it; time from the Set to the last rank holding the value (each checked);
//       then the same through node relays (load_relay.cc): one upstream wait per agent,
//       --relay-sample agents running the real StoreRelay with R real local clients,
//       whose local hop is measured (and again in --hop-trials quiet trials);
//   (c) heartbeats: every agent opens its health stream and beats once a second with R
//       RankHealth entries for --heartbeat-s: beats/s, the coordinator's CPU (cores,
//       from utime+stime) and memory (VmRSS, VmHWM).
// Prints a table and one JSON line. Exit status 0 when every call succeeded and every
// check held (targets missed do not change it: this is a measurement, not a test).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "coordinator_process.h"
#include "load_agents.h"
#include "nlohmann/json.hpp"

namespace colossus::bench {
namespace {

std::string DefaultCoordinator() {
  // Next to this program, or where the build tree puts the coordinator.
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path beside = self.parent_path() / "colossus-coordinator";
    if (std::filesystem::exists(beside)) return beside.string();
  }
#ifdef COLOSSUS_COORDINATOR_BINARY
  return COLOSSUS_COORDINATOR_BINARY;
#else
  return "colossus-coordinator";
#endif
}

double MiB(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

struct Row {
  std::string phase, figure, value, target;
};

void PrintTable(const std::vector<Row>& rows) {
  std::printf("%-11s %-50s %-24s %s\n", "phase", "figure", "value", "target");
  for (const Row& r : rows) {
    std::printf("%-11s %-50s %-24s %s\n", r.phase.c_str(), r.figure.c_str(), r.value.c_str(),
                r.target.c_str());
  }
}

std::string Secs(double s) { return absl::StrFormat("%.3f s", s); }

}  // namespace

int Main(int argc, char** argv) {
  // Debian's abseil checks every mutex acquisition for lock-order cycles; gRPC takes
  // many mutexes per call, and the check would bill its cost to the figures.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  CLI::App app{"colossus-coordinator-load: rendezvous, NCCL-id and heartbeat load on a coordinator"};
  int agents = 1250, ranks = 8, cq_threads = 8, max_connections = 16000;
  double heartbeat_s = 60;
  std::string coordinator = DefaultCoordinator();
  std::string run_dir;
  std::vector<std::string> extra_args;
  bool held_deadlines = false;
  std::string phases = "abc";
  int relay_sample = 16, hop_trials = 200;
  std::string nccl_id = "both";
  app.add_option("--agents", agents, "simulated node agents (N)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--ranks-per-agent", ranks, "ranks (GPUs) per agent")->check(CLI::Range(1, 1024));
  app.add_option("--heartbeat-s", heartbeat_s, "seconds of 1 Hz heartbeats measured (0: skip)");
  app.add_option("--coordinator", coordinator, "path of colossus-coordinator")->capture_default_str();
  app.add_option("--cq-threads", cq_threads, "completion queues (one thread each) of the load")
      ->check(CLI::Range(1, 256));
  app.add_option("--max-connections", max_connections,
                 "TCP connections at most; agents beyond share them")
      ->check(CLI::Range(1, 1 << 20));
  app.add_flag("--held-call-deadlines,!--no-held-call-deadlines", held_deadlines,
               "held Joins and StoreWaits carry a gRPC deadline (CoordinatorClient's do not: "
               "it cancels them itself)");
  app.add_option("--phases", phases,
                 "phases to run: a rendezvous (always), b NCCL id, c heartbeats ('ac' measures "
                 "heartbeat memory without the NCCL-id waits before it)")
      ->capture_default_str();
  app.add_option("--nccl-id", nccl_id, "phase (b): direct (every rank waits at the coordinator), "
                 "relayed (one wait per agent through node relays) or both")
      ->check(CLI::IsMember({"direct", "relayed", "both"}))
      ->capture_default_str();
  app.add_option("--relay-sample", relay_sample,
                 "relayed: agents that run the real store relay with R real local clients")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--hop-trials", hop_trials, "relayed: quiet trials of the relay's local hop")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--run-dir", run_dir, "the coordinator's run directory (default: a fresh temp dir)");
  app.add_option("--coordinator-arg", extra_args, "extra flag for the coordinator (repeatable)")
      ->allow_extra_args(false);
  CLI11_PARSE(app, argc, argv);

  if (run_dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "colossus-load-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::cerr << "colossus-coordinator-load: cannot create a temp dir\n";
      return 1;
    }
    run_dir = tmpl;
  }
  std::filesystem::create_directories(run_dir);
  const std::string token = absl::StrCat("load-token-", getpid());
  const std::string token_file = run_dir + "/token";
  std::ofstream(token_file) << token;
  const std::string job = "load";

  std::vector<std::string> args = {
      "--job-id", job, "--listen", "127.0.0.1:0", "--token-file", token_file,
      "--run-dir", run_dir, "--min-nodes", std::to_string(agents), "--max-nodes",
      std::to_string(agents), "--settle-ms", "0",
      // No health stream is open during phases (a) and (b): a node timeout shorter than
      // the run would declare every node dead and restart the job under the benchmark.
      "--node-timeout-ms", "3600000"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  absl::StatusOr<std::unique_ptr<CoordinatorProcess>> proc = CoordinatorProcess::Start(
      coordinator, args, run_dir + "/coordinator.stderr", absl::Seconds(30));
  if (!proc.ok()) {
    std::cerr << "colossus-coordinator-load: " << proc.status() << "\n";
    return 1;
  }
  const pid_t cpid = (*proc)->pid();
  absl::StatusOr<ProcSample> idle = SampleProcess(cpid);

  LoadOptions lo;
  lo.target = (*proc)->address();
  lo.token = token;
  lo.job_id = job;
  lo.agents = agents;
  lo.ranks_per_agent = ranks;
  lo.cq_threads = cq_threads;
  lo.max_connections = max_connections;
  lo.coordinator_pid = cpid;
  lo.held_call_deadlines = held_deadlines;
  lo.progress = [](const char* what) {
    std::fprintf(stderr, "colossus-coordinator-load: %s\n", what);
  };
  absl::StatusOr<std::unique_ptr<LoadAgents>> load = LoadAgents::Create(lo);
  if (!load.ok()) {
    std::cerr << "colossus-coordinator-load: " << load.status() << "\n";
    return 1;
  }
  std::printf("colossus-coordinator-load: %d agents x %d ranks = %d ranks, %d connections, "
              "%d cq threads; coordinator %s pid %d (%s)\n",
              agents, ranks, agents * ranks, (*load)->connections(), cq_threads,
              (*proc)->address().c_str(), static_cast<int>(cpid), coordinator.c_str());
  std::fflush(stdout);

  bool all_ok = true;
  std::vector<Row> rows;
  nlohmann::json j;
  j["agents"] = agents;
  j["ranks"] = agents * ranks;
  j["connections"] = (*load)->connections();
  j["cq_threads"] = cq_threads;
  j["held_call_deadlines"] = held_deadlines;
  j["phases"] = phases;
  if (idle.ok()) j["coordinator_idle_rss_mib"] = MiB(idle->rss_bytes);

  const bool big = agents >= 12500;
  // CPU seconds both processes spent in a phase: on 2 shared cores the load generator's
  // share is CPU the coordinator did not get.
  struct Spent {
    ProcSample c, l;
  };
  auto mark = [&]() {
    Spent m;
    if (auto s = SampleProcess(cpid); s.ok()) m.c = *s;
    if (auto s = SampleProcess(0); s.ok()) m.l = *s;
    return m;
  };
  auto spent_row = [&](const char* phase, const Spent& before, nlohmann::json* out) {
    const Spent after = mark();
    const double coord = after.c.cpu_seconds - before.c.cpu_seconds;
    const double self = after.l.cpu_seconds - before.l.cpu_seconds;
    rows.push_back({phase, "CPU spent: coordinator / load generator",
                    absl::StrFormat("%.2f / %.2f s", coord, self), ""});
    (*out)["coordinator_cpu_s"] = coord;
    (*out)["load_cpu_s"] = self;
  };
  auto progress = [](const char* what) {
    std::fprintf(stderr, "colossus-coordinator-load: %s\n", what);
  };
  progress("(a) rendezvous");
  const Spent before_a = mark();
  const RendezvousFigures a = (*load)->Rendezvous();
  all_ok &= a.failed == 0 && a.assignments_ok;
  rows.push_back({"rendezvous", "Joins issued (first -> last sent)", Secs(a.issue_s), ""});
  rows.push_back({"rendezvous", absl::StrCat("all ", agents, " answered (from first sent)"),
                  Secs(a.all_answered_s),
                  agents >= 25000 ? "< 10 s" : (big ? "< 5 s" : "")});
  rows.push_back({"rendezvous", "last Join sent -> last assignment", Secs(a.tail_s),
                  big ? "< 1 s" : ""});
  rows.push_back({"rendezvous", "answers ok / failed",
                  absl::StrCat(a.ok, " / ", a.failed), "all ok"});
  rows.push_back({"rendezvous", "assignments (node_id order, contiguous)",
                  a.assignments_ok ? "right" : "WRONG", "right"});
  j["rendezvous"] = {{"issue_s", a.issue_s}, {"all_answered_s", a.all_answered_s},
                     {"tail_s", a.tail_s}, {"ok", a.ok}, {"failed", a.failed},
                     {"assignments_ok", a.assignments_ok}, {"generation", a.generation},
                     {"coordinator_rss_mib", MiB(a.coordinator_after.rss_bytes)}};
  spent_row("rendezvous", before_a, &j["rendezvous"]);
  if (!a.first_error.empty()) std::printf("rendezvous error: %s\n", a.first_error.c_str());
  if (!a.assignment_error.empty()) std::printf("assignment error: %s\n", a.assignment_error.c_str());

  if (a.ok > 0 && phases.find('b') != std::string::npos && nccl_id != "relayed") {
    progress("(b) NCCL id");
    const Spent before_b = mark();
    const NcclIdFigures b = (*load)->NcclId();
    all_ok &= b.failed == 0 && b.values_ok;
    rows.push_back({"nccl id", absl::StrCat(b.waits, " StoreWaits issued"), Secs(b.issue_s), ""});
    rows.push_back({"nccl id", "until both processes quiet", Secs(b.settle_s), ""});
    rows.push_back({"nccl id", "Set round trip", Secs(b.set_rtt_s), ""});
    rows.push_back({"nccl id", absl::StrCat("Set -> last of ", b.waits, " ranks holding it"),
                    Secs(b.set_to_last_s), big ? "< 3 s" : ""});
    rows.push_back({"nccl id", "values ok / failed",
                    absl::StrCat(b.ok, " / ", b.failed, b.values_ok ? " (right)" : " (WRONG)"),
                    "all ok"});
    rows.push_back({"nccl id", "coordinator RSS after", absl::StrFormat("%.0f MiB", MiB(b.coordinator_after.rss_bytes)), ""});
    j["nccl_id"] = {{"waits", b.waits}, {"issue_s", b.issue_s}, {"settle_s", b.settle_s},
                    {"set_rtt_s", b.set_rtt_s}, {"set_to_last_s", b.set_to_last_s},
                    {"ok", b.ok}, {"failed", b.failed}, {"values_ok", b.values_ok},
                    {"coordinator_rss_mib", MiB(b.coordinator_after.rss_bytes)}};
    spent_row("nccl id", before_b, &j["nccl_id"]);
    if (!b.first_error.empty()) std::printf("nccl id error: %s\n", b.first_error.c_str());
  }

  if (a.ok > 0 && phases.find('b') != std::string::npos && nccl_id != "direct") {
    progress("(b) NCCL id through node relays");
    const Spent before_r = mark();
    const std::string socket_dir = run_dir + "/relays";
    std::filesystem::create_directories(socket_dir);
    const RelayedNcclIdFigures b = (*load)->RelayedNcclId(relay_sample, hop_trials, socket_dir);
    all_ok &= b.failed == 0 && b.values_ok;
    const std::string ph = "nccl relay";
    rows.push_back({ph, absl::StrCat(b.upstream_waits, " upstream waits (", b.sampled, " real relays x ", ranks, ")"),
                    Secs(b.issue_s), ""});
    rows.push_back({ph, "until both processes quiet", Secs(b.settle_s), ""});
    rows.push_back({ph, "Set round trip", Secs(b.set_rtt_s), ""});
    rows.push_back({ph, absl::StrCat("Set -> last of ", b.upstream_waits, " agents' upstream answer"),
                    Secs(b.set_to_last_upstream_s), ""});
    rows.push_back({ph, "local hop in the fan-out: median / max", absl::StrFormat("%.2f / %.2f ms", b.hop_median_s * 1e3, b.hop_max_s * 1e3), ""});
    rows.push_back({ph, absl::StrCat("local hop, ", b.hop_trials, " quiet trials: median/p99/max"),
                    absl::StrFormat("%.2f / %.2f / %.2f ms", b.trial_hop_median_s * 1e3, b.trial_hop_p99_s * 1e3,
                                    b.trial_hop_max_s * 1e3), ""});
    rows.push_back({ph, "Set -> last sampled local rank (measured)", Secs(b.set_to_last_sampled_rank_s), ""});
    rows.push_back({ph, absl::StrCat("Set -> last of ", agents * ranks, " ranks (upstream + max hop)"),
                    Secs(b.set_to_last_rank_s), big ? "< 3 s" : ""});
    rows.push_back({ph, "sampled relays: local waits -> upstream calls",
                    absl::StrCat(b.relays_local_waits, " -> ", b.relays_upstream_calls), ""});
    rows.push_back({ph, "values ok / failed",
                    absl::StrCat(b.ok, " / ", b.failed, b.values_ok ? " (right)" : " (WRONG)"), "all ok"});
    j["nccl_id_relayed"] = {{"upstream_waits", b.upstream_waits}, {"sampled_relays", b.sampled},
                            {"issue_s", b.issue_s}, {"settle_s", b.settle_s}, {"set_rtt_s", b.set_rtt_s},
                            {"set_to_last_upstream_s", b.set_to_last_upstream_s},
                            {"hop_median_s", b.hop_median_s}, {"hop_max_s", b.hop_max_s},
                            {"set_to_last_sampled_rank_s", b.set_to_last_sampled_rank_s},
                            {"hop_trials", b.hop_trials}, {"trial_hop_median_s", b.trial_hop_median_s},
                            {"trial_hop_p99_s", b.trial_hop_p99_s}, {"trial_hop_max_s", b.trial_hop_max_s},
                            {"set_to_last_rank_s", b.set_to_last_rank_s},
                            {"relays_local_waits", b.relays_local_waits},
                            {"relays_upstream_calls", b.relays_upstream_calls}, {"ok", b.ok},
                            {"failed", b.failed}, {"values_ok", b.values_ok},
                            {"coordinator_rss_mib", MiB(b.coordinator_after.rss_bytes)}};
    spent_row(ph.c_str(), before_r, &j["nccl_id_relayed"]);
    if (!b.first_error.empty()) std::printf("nccl id (relayed) error: %s\n", b.first_error.c_str());
  }

  if (a.ok > 0 && heartbeat_s > 0 && phases.find('c') != std::string::npos) {
    progress("(c) heartbeats");
    const HeartbeatFigures c = (*load)->Heartbeats(absl::Seconds(heartbeat_s));
    all_ok &= c.streams_failed == 0 && c.streams_open == agents;
    rows.push_back({"heartbeats", "streams open / failed",
                    absl::StrCat(c.streams_open, " / ", c.streams_failed), ""});
    rows.push_back({"heartbeats", "opening all streams", Secs(c.open_s), ""});
    rows.push_back({"heartbeats", absl::StrFormat("beats/s over %.0f s", c.measured_s),
                    absl::StrFormat("%.0f (%lld late)", c.beats_per_s,
                                    static_cast<long long>(c.late_beats)),
                    absl::StrCat(agents)});
    rows.push_back({"heartbeats", "coordinator CPU", absl::StrFormat("%.3f cores", c.coordinator_cores),
                    big ? "< 0.5" : ""});
    rows.push_back({"heartbeats", "coordinator VmRSS / VmHWM",
                    absl::StrFormat("%.0f / %.0f MiB", MiB(c.coordinator_after.rss_bytes),
                                    MiB(c.coordinator_after.hwm_bytes)),
                    big ? "< 1024 MiB" : ""});
    rows.push_back({"heartbeats", "load generator CPU", absl::StrFormat("%.3f cores", c.load_cores), ""});
    rows.push_back({"heartbeats", "commands received", absl::StrCat(c.commands), "0"});
    j["heartbeats"] = {{"streams_open", c.streams_open}, {"streams_failed", c.streams_failed},
                       {"open_s", c.open_s}, {"measured_s", c.measured_s},
                       {"beats_per_s", c.beats_per_s}, {"late_beats", c.late_beats},
                       {"coordinator_cores", c.coordinator_cores},
                       {"coordinator_rss_mib", MiB(c.coordinator_after.rss_bytes)},
                       {"coordinator_hwm_mib", MiB(c.coordinator_after.hwm_bytes)},
                       {"coordinator_threads", c.coordinator_after.threads},
                       {"load_cores", c.load_cores}, {"commands", c.commands}};
    if (!c.first_error.empty()) std::printf("heartbeat error: %s\n", c.first_error.c_str());
  }
  if (absl::StatusOr<ProcSample> end = SampleProcess(cpid); end.ok()) {
    j["coordinator_hwm_mib"] = MiB(end->hwm_bytes);
    j["coordinator_cpu_s_total"] = end->cpu_seconds;
  }
  j["coordinator_alive"] = (*proc)->Alive();
  all_ok &= j["coordinator_alive"].get<bool>();
  j["ok"] = all_ok;
  PrintTable(rows);
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  load->reset();  // channels close before the coordinator is stopped
  return all_ok ? 0 : 1;
}

}  // namespace colossus::bench

int main(int argc, char** argv) { return colossus::bench::Main(argc, argv); }
