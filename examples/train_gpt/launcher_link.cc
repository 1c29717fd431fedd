#include "launcher_link.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "colossus/launcher/coordinator_client.h"
#include "colossus/launcher/status_file.h"
#include "colossus/launcher/worker_store.h"
#include "colossus/parallel/process_group.h"

namespace colossus::examples {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

std::string DefaultCheckpointDir() {
  if (Env("COLOSSUS_COORDINATOR").empty() || Env("COLOSSUS_RUN_DIR").empty()) return "";
  return Env("COLOSSUS_RUN_DIR") + "/checkpoints";
}

LauncherLink::~LauncherLink() = default;

absl::StatusOr<std::unique_ptr<LauncherLink>> LauncherLink::FromEnvironment() {
  const std::string target = Env("COLOSSUS_COORDINATOR");
  if (target.empty()) return std::unique_ptr<LauncherLink>();
  parallel::SetCoordinatorStoreFactory(
      [](const parallel::DistEnv&) { return launcher::CoordinatorStoreFromEnvironment(); });

  const std::string job = Env("COLOSSUS_JOB_ID"), token_file = Env("COLOSSUS_TOKEN_FILE");
  if (job.empty()) return absl::InvalidArgumentError("COLOSSUS_JOB_ID is not set (COLOSSUS_COORDINATOR is)");
  if (token_file.empty()) {
    return absl::InvalidArgumentError("COLOSSUS_TOKEN_FILE is not set (COLOSSUS_COORDINATOR is)");
  }
  std::ifstream in(token_file);
  std::string token;
  std::getline(in, token);
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("COLOSSUS_TOKEN_FILE=", token_file, ": no token in it"));
  }
  int64_t generation = 0;
  if (const std::string g = Env("COLOSSUS_GENERATION"); !g.empty() && !absl::SimpleAtoi(g, &generation)) {
    return absl::InvalidArgumentError(absl::StrCat("COLOSSUS_GENERATION=", g, " is not a number"));
  }
  launcher::CoordinatorClientOptions options;
  options.channel.target = target;
  options.channel.tls.ca_cert_file = Env("COLOSSUS_TLS_CA");
  options.channel.tls.client_cert_file = Env("COLOSSUS_TLS_CERT");
  options.channel.tls.client_key_file = Env("COLOSSUS_TLS_KEY");
  options.token = token;
  options.job_id = job;
  options.initial_generation = generation;
  auto client = launcher::CoordinatorClient::Create(options);
  if (!client.ok()) return client.status();
  std::unique_ptr<LauncherLink> link(new LauncherLink());
  link->client_ = std::shared_ptr<launcher::CoordinatorClient>(*std::move(client));
  link->status_file_ = Env("COLOSSUS_STATUS_FILE");
  return link;
}

TrainerHooks LauncherLink::Hooks() {
  TrainerHooks hooks;
  std::shared_ptr<launcher::CoordinatorClient> client = client_;
  hooks.make_committer = [client](int, int, const checkpoint::RetentionPolicy& retention) {
    checkpoint::ReportShardFn report =
        [client](const checkpoint::CoordinatorShardReport& r)
        -> absl::StatusOr<checkpoint::CoordinatorShardAck> {
      launcher::v1::ShardReport p;
      p.set_step(r.step);
      p.set_rank(r.rank);
      p.set_num_shards(r.num_shards);
      p.set_path(r.path);
      p.set_bytes(r.bytes);
      p.set_checksum(r.checksum);
      p.set_directory(r.directory);
      auto ack = client->ReportShard(p);
      if (!ack.ok()) return ack.status();
      return checkpoint::CoordinatorShardAck{ack->committed(), ack->received(),
                                             ack->latest().step(), ack->latest().directory()};
    };
    return std::make_shared<checkpoint::CoordinatorShardCommitter>(std::move(report), retention);
  };
  hooks.latest_checkpoint = [client]() -> absl::StatusOr<std::pair<int64_t, std::string>> {
    auto ref = client->GetLatestCheckpoint();
    if (!ref.ok()) return ref.status();
    return std::make_pair(ref->step(), ref->directory());
  };
  hooks.checkpoint_fallback = [client](const CheckpointFallback& f) -> absl::Status {
    launcher::v1::InvalidateCheckpointsRequest request;
    request.mutable_resumed()->set_step(f.resumed_step);
    request.mutable_resumed()->set_directory(f.resumed_dir);
    request.mutable_resumed()->set_num_shards(f.num_shards);
    for (const CheckpointFallback::Invalid& bad : f.invalid) {
      launcher::v1::InvalidCheckpoint* p = request.add_invalid();
      p->set_step(bad.step);
      p->set_directory(bad.step_dir);
      p->set_reason(bad.reason);
    }
    return client->InvalidateCheckpoints(std::move(request)).status();
  };
  if (!status_file_.empty()) {
    // The agent reads the file once a heartbeat: writing it every step of a tiny model
    // would only cost renames.
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    hooks.on_step = [path = status_file_, last](const StepRecord& r) {
      const auto now = std::chrono::steady_clock::now();
      if (now - *last < std::chrono::milliseconds(200) && r.step + 1 != r.total_steps) return;
      *last = now;
      launcher::RankStatusReport report;
      report.step = r.step;
      report.total_steps = r.total_steps;
      report.loss = r.loss;
      report.tokens_per_s = r.tokens_per_s;
      (void)launcher::WriteRankStatus(path, report);  // best effort (status_file.h)
    };
  }
  return hooks;
}

}  // namespace colossus::examples
