// MakeCoordinatorChannel: the channel arguments node agents use towards the coordinator.
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "colossus/launcher/coordinator_client.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace colossus::launcher {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("coordinator TLS: cannot read the ",
                                            absl::string_view(what.data(), what.size()),
                                            " file '", path, "'"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "coordinator TLS: the ", absl::string_view(what.data(), what.size()), " file '", path,
        "' is empty"));
  }
  return text.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const CoordinatorTlsOptions& tls) {
  if (tls.ca_cert_file.empty()) {
    if (!tls.client_cert_file.empty() || !tls.client_key_file.empty()) {
      return absl::InvalidArgumentError(
          "coordinator TLS: a client certificate was given without ca_cert_file");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (tls.client_cert_file.empty() != tls.client_key_file.empty()) {
    return absl::InvalidArgumentError(
        "coordinator TLS: client_cert_file and client_key_file go together");
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca = ReadPem(tls.ca_cert_file, "CA certificate");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *std::move(ca);
  if (!tls.client_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem(tls.client_cert_file, "client certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(tls.client_key_file, "client key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeCoordinatorChannel(
    const CoordinatorChannelOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("coordinator client: empty target (want host:port)");
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = Credentials(options.tls);
  if (!creds.ok()) return creds.status();

  grpc::ChannelArguments args;
  // BDP probing pings every connection to size its flow-control window: useless for
  // small control messages and, over thousands of agent connections, a real share of
  // the coordinator's CPU (PLATFORM.md: 0.72 -> 0.43 core at 12,500 streams).
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  if (options.keepalive_time > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
    // Only while calls are open (an agent always has its health stream open).
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    // Agents send beats (data) between pings; do not cap pings for want of data.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  // channelz keeps a node and an event trace per channel and subchannel for an admin
  // service agents do not run; at thousands of channels per process (the load
  // benchmark) it is a real share of connection setup.
  args.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
  if (options.own_connection) {
    // gRPC shares subchannels (TCP connections) between channels with equal arguments
    // in a process-wide pool. A local pool plus an argument no other channel has gives
    // this channel a connection of its own, as a separate host would have.
    static std::atomic<int64_t> next_id{0};
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetString("colossus.channel_id",
                   absl::StrCat(getpid(), "-", next_id.fetch_add(1, std::memory_order_relaxed)));
  }
  if (!options.tls.server_name_override.empty()) {
    args.SetSslTargetNameOverride(options.tls.server_name_override);
  }
  return grpc::CreateCustomChannel(options.target, *creds, args);
}

}  // namespace colossus::launcher
