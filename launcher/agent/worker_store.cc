#include "colossus/launcher/worker_store.h"

#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "colossus/launcher/coordinator_store.h"

namespace colossus::launcher {

absl::StatusOr<std::shared_ptr<comm::Store>> CoordinatorStoreFromEnvironment(const EnvLookupFn& env) {
  auto need = [&](const char* name) -> absl::StatusOr<std::string> {
    std::optional<std::string> v = env(name);
    if (!v.has_value() || v->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name, " is not set (the coordinator store needs it)"));
    }
    return *v;
  };
  absl::StatusOr<std::string> target = need("COLOSSUS_COORDINATOR");
  if (!target.ok()) return target.status();
  absl::StatusOr<std::string> job = need("COLOSSUS_JOB_ID");
  if (!job.ok()) return job.status();
  absl::StatusOr<std::string> token_file = need("COLOSSUS_TOKEN_FILE");
  if (!token_file.ok()) return token_file.status();
  int64_t generation = 0;
  if (std::optional<std::string> g = env("COLOSSUS_GENERATION"); g.has_value() && !g->empty()) {
    if (!absl::SimpleAtoi(*g, &generation) || generation < 0) {
      return absl::InvalidArgumentError(absl::StrCat("COLOSSUS_GENERATION=", *g, " is not a generation number"));
    }
  }
  std::ifstream in(*token_file);
  std::string token;
  std::getline(in, token);
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("COLOSSUS_TOKEN_FILE=", *token_file, ": no token in it"));
  }
  CoordinatorClientOptions options;
  options.channel.target = *target;
  if (std::optional<std::string> relay = env("COLOSSUS_STORE"); relay.has_value() && !relay->empty()) {
    // The node agent's relay (store_relay.h): a local socket, plaintext (the token still
    // travels and is checked there and at the coordinator). It retries the coordinator
    // itself, so a relay that cannot be reached means the agent is gone: fail with that
    // within a minute instead of retrying for a whole wait's timeout.
    options.channel.target = *relay;
    options.peer_name = absl::StrCat("store relay ", *relay, " (the node agent's; coordinator ",
                                      *target, ")");
    options.retry.held_max_elapsed = absl::Seconds(60);
  } else {
    options.channel.tls.ca_cert_file = env("COLOSSUS_TLS_CA").value_or("");
    options.channel.tls.client_cert_file = env("COLOSSUS_TLS_CERT").value_or("");
    options.channel.tls.client_key_file = env("COLOSSUS_TLS_KEY").value_or("");
  }
  options.token = token;
  options.job_id = *job;
  options.initial_generation = generation;
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> client = CoordinatorClient::Create(options);
  if (!client.ok()) return client.status();
  return std::make_shared<CoordinatorStore>(std::shared_ptr<CoordinatorClient>(*std::move(client)));
}

}  // namespace colossus::launcher
