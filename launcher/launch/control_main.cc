// `colossus-launch status|stop`: against a running job.
//
//   colossus-launch status --coordinator HOST:PORT --job ID --token-file F [--json]
//   colossus-launch status manifest.yaml
//   colossus-launch stop   (same arguments) [--reason TEXT]
//
// With a manifest, the coordinator is the one it names, or the one colossus-launch
// started for it (<run_dir>/coordinator.address), and the token is the manifest's (or
// <run_dir>/token). Exit codes: 0 answered (status: the job is running or succeeded),
// 1 the job failed, 3 it was stopped, 2 bad arguments, 4 coordinator unreachable.
#include <cstdio>
#include <fstream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "colossus/launcher/coordinator_client.h"
#include "colossus/launcher/exit_codes.h"
#include "colossus/launcher/manifest.h"
#include "google/protobuf/util/json_util.h"
#include "job_view.h"
#include "launch_main.h"

namespace colossus::launcher {
namespace {

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "colossus-launch: %s\n", message.c_str());
  return code;
}

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return std::string(absl::StripAsciiWhitespace(line));
}

void PrintStatus(const v1::JobStatus& s) {
  std::printf("job %s: %s, generation %lld, restarts %d/%d, nodes %d alive of %d, world %d\n",
              s.job_id().c_str(), PhaseName(s.phase()).c_str(), static_cast<long long>(s.generation()),
              s.restarts(), s.max_restarts(), s.nodes_alive(), s.nodes_size(), s.world_size());
  if (s.max_step() >= 0 && s.phase() == v1::JOB_PHASE_RUNNING) {
    // Steps are 0-based in the health reports; "done" counts completed steps.
    std::printf("steps done %lld..%lld", static_cast<long long>(s.min_step() + 1),
                static_cast<long long>(s.max_step() + 1));
    if (const int64_t total = TotalSteps(s); total > 0) std::printf(" of %lld", static_cast<long long>(total));
    std::printf("\n");
  }
  if (s.latest_checkpoint().step() > 0) {
    std::printf("latest checkpoint: step %lld in %s\n", static_cast<long long>(s.latest_checkpoint().step()),
                s.latest_checkpoint().directory().c_str());
  }
  if (!s.reason().empty()) std::printf("reason: %s\n", s.reason().c_str());
  for (const v1::NodeStatus& n : s.nodes()) {
    std::printf("  node %s (%s): %s, ranks %d-%d, last beat %lld ms ago\n", n.assignment().node_id().c_str(),
                n.assignment().address().c_str(), n.alive() ? "alive" : "dead", n.assignment().first_rank(),
                n.assignment().first_rank() + n.assignment().local_world_size() - 1,
                static_cast<long long>(n.last_heartbeat_age_ms()));
    for (const v1::RankHealth& r : n.ranks()) {
      std::printf("    rank %d: %s step %lld", n.assignment().first_rank() + r.local_rank(),
                  v1::RankState_Name(r.state()).c_str() + std::strlen("RANK_STATE_"),
                  static_cast<long long>(r.step()));
      if (r.state() == v1::RANK_STATE_FAILED) {
        std::printf(r.signal() ? " (signal %d)" : " (exit code %d)", r.signal() ? r.signal() : r.exit_code());
      }
      std::printf("\n");
    }
  }
}

}  // namespace

int ControlMain(int argc, char** argv) {
  const std::string verb = argv[1];
  CLI::App app{"colossus-launch " + verb + ": " +
               (verb == "stop" ? "stop a running job on every node" : "show a running job's state")};
  std::string manifest_path, coordinator, job_id, token_file, reason = "stopped by colossus-launch stop";
  bool json = false;
  app.add_option("manifest", manifest_path, "the job's manifest");
  app.add_option("--coordinator", coordinator, "HOST:PORT");
  app.add_option("--job", job_id, "the job id");
  app.add_option("--token-file", token_file, "file holding the job's token");
  app.add_flag("--json", json, "print the JobStatus as JSON");
  if (verb == "stop") app.add_option("--reason", reason, "why (shown in status and logs)");
  try {
    app.parse(argc - 1, argv + 1);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitBadManifest;
  }
  std::string token;
  if (!manifest_path.empty()) {
    absl::StatusOr<Manifest> m = LoadManifest(manifest_path);
    if (!m.ok()) return Fail(kExitBadManifest, std::string(m.status().message()));
    if (job_id.empty()) job_id = m->name;
    if (coordinator.empty()) {
      coordinator = m->coordinator.start_here ? FirstLine(m->run_dir + "/coordinator.address")
                                              : m->coordinator.address.ToString();
    }
    if (coordinator.empty()) {
      return Fail(kExitCoordinatorUnreachable,
                  absl::StrCat("no coordinator address: ", m->run_dir, "/coordinator.address is missing (not started?)"));
    }
    token = m->auth.token;
    if (token.empty()) token = FirstLine(m->run_dir + "/token");
  }
  if (!token_file.empty()) {
    token = FirstLine(token_file);
    if (token.empty()) return Fail(kExitBadManifest, absl::StrCat("cannot read a token from ", token_file));
  }
  if (coordinator.empty() || job_id.empty() || token.empty()) {
    return Fail(kExitBadManifest, "give a manifest, or --coordinator, --job and --token-file");
  }
  CoordinatorClientOptions o;
  o.channel.target = coordinator;
  o.token = token;
  o.job_id = job_id;
  o.retry.max_elapsed = absl::Seconds(5);
  o.call_timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> client = CoordinatorClient::Create(o);
  if (!client.ok()) return Fail(kExitBadManifest, std::string(client.status().message()));
  absl::StatusOr<v1::JobStatus> status;
  if (verb == "stop") {
    absl::StatusOr<v1::StopJobResponse> r = (*client)->StopJob(reason);
    if (r.ok()) {
      status = r->status();
    } else {
      status = r.status();
    }
  } else {
    status = (*client)->GetJobStatus();
  }
  if (!status.ok()) {
    const absl::StatusCode c = status.status().code();
    return Fail(c == absl::StatusCode::kUnavailable || c == absl::StatusCode::kDeadlineExceeded
                    ? kExitCoordinatorUnreachable
                    : kExitBadManifest,
                std::string(status.status().message()));
  }
  if (json) {
    std::string out;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(*status, &out, options);
    std::printf("%s\n", out.c_str());
  } else {
    PrintStatus(*status);
  }
  switch (status->phase()) {
    case v1::JOB_PHASE_FAILED: return kExitJobFailed;
    case v1::JOB_PHASE_STOPPED: return verb == "stop" ? kExitSuccess : kExitStopped;
    default: return kExitSuccess;
  }
}

}  // namespace colossus::launcher
