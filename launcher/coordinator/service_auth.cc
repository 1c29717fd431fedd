// Authentication, header checks, status mapping and the first-message watch.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service.h"

namespace colossus::launcher::service {

grpc::Status Authorize(ServiceContext& ctx, const grpc::ServerContext& call) {
  const auto& metadata = call.client_metadata();
  auto it = metadata.find(kTokenMetadata);
  if (it == metadata.end()) {
    ctx.unauthenticated.fetch_add(1, std::memory_order_relaxed);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat("missing ", kTokenMetadata, " metadata"));
  }
  if (!TokenMatches(ctx.token, std::string_view(it->second.data(), it->second.size()))) {
    ctx.unauthenticated.fetch_add(1, std::memory_order_relaxed);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat("wrong ", kTokenMetadata, " for this coordinator"));
  }
  return grpc::Status::OK;
}

grpc::Status CheckHeader(const ServiceContext& ctx, bool has_header,
                         const v1::RequestHeader& header, const char* rpc) {
  if (!has_header) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(rpc, ".header is missing (job_id, generation)"));
  }
  if (header.job_id() != ctx.job_id) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat(rpc, ".header.job_id '", header.job_id(),
                                     "' is not this coordinator's job ('", ctx.job_id, "')"));
  }
  if (header.generation() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(rpc, ".header.generation ", header.generation(),
                                     " is negative"));
  }
  return grpc::Status::OK;
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

uint64_t ServiceContext::WatchFirstMessage(std::weak_ptr<FirstMessageWatch> call,
                                           absl::Time deadline) {
  absl::MutexLock lock(&watch_mu_);
  uint64_t id = next_watch_++;
  watches_.emplace(id, Watch{std::move(call), deadline});
  return id;
}

void ServiceContext::Unwatch(uint64_t id) {
  absl::MutexLock lock(&watch_mu_);
  watches_.erase(id);
}

void ServiceContext::SweepFirstMessages(absl::Time now, bool all) {
  std::vector<std::shared_ptr<FirstMessageWatch>> late;
  {
    absl::MutexLock lock(&watch_mu_);
    // Deadlines grow with ids (a fixed timeout after registration), so the late ones are
    // a prefix.
    for (auto it = watches_.begin(); it != watches_.end();) {
      if (!all && it->second.deadline > now) break;
      if (auto call = it->second.call.lock()) late.push_back(std::move(call));
      it = watches_.erase(it);
    }
  }
  if (!all) first_message_timeouts.fetch_add(static_cast<int64_t>(late.size()));
  absl::Status status =
      all ? absl::UnavailableError("coordinator shutting down")
          : absl::DeadlineExceededError(absl::StrCat(
                "no first message on the Health stream within ",
                absl::FormatDuration(first_message_timeout), " (it must name the node)"));
  for (auto& call : late) call->CutOff(status);
}

}  // namespace colossus::launcher::service
