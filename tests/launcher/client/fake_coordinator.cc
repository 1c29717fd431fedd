#include "fake_coordinator.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace colossus::launcher::testing {

int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::abort();
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

FakeCoordinator::FakeCoordinator(std::string job_id, std::string token, int nodes, int port)
    : job_id_(std::move(job_id)), token_(std::move(token)), nodes_(nodes) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &port_);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) std::abort();
}

FakeCoordinator::~FakeCoordinator() { Stop(); }

void FakeCoordinator::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  // Health handlers block in Read: the deadline cancels what is still open then.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  server_->Wait();
}

void FakeCoordinator::PushCommand(const v1::Command& command) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto* stream : health_streams_) stream->Write(command);
}

void FakeCoordinator::RefuseHealth(grpc::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  refuse_health_ = true;
  health_refusal_ = std::move(status);
}

void FakeCoordinator::SetEvents(std::vector<v1::JobEvent> events) {
  std::lock_guard<std::mutex> lock(mu_);
  events_ = std::move(events);
}

int64_t FakeCoordinator::calls(const std::string& rpc) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = calls_.find(rpc);
  return it == calls_.end() ? 0 : it->second;
}

bool FakeCoordinator::had_deadline(const std::string& rpc) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = had_deadline_.find(rpc);
  return it != had_deadline_.end() && it->second;
}

std::vector<std::string> FakeCoordinator::tokens_seen() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_;
}

std::set<std::string> FakeCoordinator::peers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peers_;
}

std::vector<v1::NodeHealth> FakeCoordinator::beats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return beats_;
}

grpc::Status FakeCoordinator::Admit(grpc::ServerContext* context, const std::string& rpc,
                                    const v1::RequestHeader& header) {
  std::string token;
  auto it = context->client_metadata().find("x-colossus-token");
  if (it != context->client_metadata().end()) token.assign(it->second.data(), it->second.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_[rpc];
    had_deadline_[rpc] = context->deadline() != std::chrono::system_clock::time_point::max();
    tokens_.push_back(token);
    peers_.insert(context->peer());
  }
  if (token != token_) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "fake: wrong token");
  if (header.job_id() != job_id_) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "fake: unknown job '" + header.job_id() + "'");
  }
  last_generation_ = header.generation();
  int n = fail_next_.load();
  while (n > 0 && !fail_next_.compare_exchange_weak(n, n - 1)) {
  }
  if (n > 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake: scripted");
  return grpc::Status::OK;
}

std::map<std::string, std::string>& FakeCoordinator::Table(v1::KeyScope scope) {
  return scope == v1::KEY_SCOPE_JOB ? job_keys_ : generation_keys_;
}

grpc::Status FakeCoordinator::Join(grpc::ServerContext* context, const v1::JoinRequest* request,
                                   v1::JoinResponse* response) {
  if (grpc::Status s = Admit(context, "Join", request->header()); !s.ok()) return s;
  std::unique_lock<std::mutex> lock(mu_);
  joined_[request->node_id()] = *request;
  cv_.notify_all();
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(request->timeout_ms() > 0 ? request->timeout_ms() : 60000);
  auto formed = [&] { return stopping_ || static_cast<int>(joined_.size()) >= nodes_; };
  if (hold_joins_forever_) {
    cv_.wait(lock, [&] { return stopping_; });
  } else if (!cv_.wait_until(lock, until, formed)) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "fake: join timed out");
  }
  if (stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake: stopping");
  // Nodes in node_id order, ranks contiguous per node (std::map iterates sorted).
  int node_rank = 0, first_rank = 0, world = 0;
  for (const auto& [id, req] : joined_) world += req.local_world_size();
  for (const auto& [id, req] : joined_) {
    if (id == request->node_id()) {
      auto* a = response->mutable_assignment();
      a->set_node_id(id);
      a->set_address(req.address());
      a->set_node_rank(node_rank);
      a->set_first_rank(first_rank);
      a->set_local_world_size(req.local_world_size());
    }
    if (node_rank == 0) response->set_master_address(req.address());
    ++node_rank;
    first_rank += req.local_world_size();
  }
  response->set_generation(1);
  response->set_num_nodes(static_cast<int>(joined_.size()));
  response->set_world_size(world);
  response->set_heartbeat_interval_ms(1000);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::StoreSet(grpc::ServerContext* context,
                                       const v1::StoreSetRequest* request, v1::StoreSetResponse*) {
  if (grpc::Status s = Admit(context, "StoreSet", request->header()); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  Table(request->scope())[request->key()] = request->value();
  cv_.notify_all();
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::StoreGet(grpc::ServerContext* context,
                                       const v1::StoreGetRequest* request,
                                       v1::StoreGetResponse* response) {
  if (grpc::Status s = Admit(context, "StoreGet", request->header()); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto& table = Table(request->scope());
  auto it = table.find(request->key());
  if (it == table.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "fake: no key '" + request->key() + "'");
  }
  response->set_value(it->second);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::StoreWait(grpc::ServerContext* context,
                                        const v1::StoreWaitRequest* request,
                                        v1::StoreWaitResponse* response) {
  if (grpc::Status s = Admit(context, "StoreWait", request->header()); !s.ok()) return s;
  std::unique_lock<std::mutex> lock(mu_);
  auto& table = Table(request->scope());
  auto all_there = [&] {
    return stopping_ || context->IsCancelled() ||
           std::all_of(request->keys().begin(), request->keys().end(),
                       [&](const std::string& k) { return table.count(k) > 0; });
  };
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(request->timeout_ms());
  // Wakes on every Set; polls cancellation a few times a second.
  while (!all_there() && std::chrono::steady_clock::now() < until) {
    cv_.wait_until(lock, std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
  }
  if (stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake: stopping");
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "fake: cancelled");
  std::string missing;
  for (const std::string& k : request->keys()) {
    if (!table.count(k)) missing += (missing.empty() ? "'" : ", '") + k + "'";
  }
  if (!missing.empty()) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "fake: keys missing: " + missing);
  }
  for (const std::string& k : request->keys()) response->add_values(table[k]);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::StoreAdd(grpc::ServerContext* context,
                                       const v1::StoreAddRequest* request,
                                       v1::StoreAddResponse* response) {
  if (grpc::Status s = Admit(context, "StoreAdd", request->header()); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto& table = Table(request->scope());
  int64_t value = 0;
  if (auto it = table.find(request->key()); it != table.end()) {
    char* end = nullptr;
    value = std::strtoll(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0') {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "fake: key '" + request->key() + "' holds no int64");
    }
  }
  value += request->delta();
  table[request->key()] = std::to_string(value);
  cv_.notify_all();
  response->set_value(value);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::StoreCompareSet(grpc::ServerContext* context,
                                              const v1::StoreCompareSetRequest* request,
                                              v1::StoreCompareSetResponse* response) {
  if (grpc::Status s = Admit(context, "StoreCompareSet", request->header()); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto& table = Table(request->scope());
  auto it = table.find(request->key());
  const bool match = request->expect_absent() ? it == table.end()
                                              : it != table.end() && it->second == request->expected();
  if (match) {
    table[request->key()] = request->desired();
    cv_.notify_all();
  }
  response->set_swapped(match);
  it = table.find(request->key());
  response->set_has_value(it != table.end());
  if (it != table.end()) response->set_value(it->second);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::StoreDelete(grpc::ServerContext* context,
                                          const v1::StoreDeleteRequest* request,
                                          v1::StoreDeleteResponse* response) {
  if (grpc::Status s = Admit(context, "StoreDelete", request->header()); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  response->set_existed(Table(request->scope()).erase(request->key()) > 0);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::Health(grpc::ServerContext* context,
                                     grpc::ServerReaderWriter<v1::Command, v1::NodeHealth>* stream) {
  v1::NodeHealth beat;
  if (!stream->Read(&beat)) return grpc::Status::OK;
  if (grpc::Status s = Admit(context, "Health", beat.header()); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (refuse_health_) return health_refusal_;
    beats_.push_back(beat);
    health_streams_.push_back(stream);
  }
  ++open_health_streams_;
  while (stream->Read(&beat)) {
    std::lock_guard<std::mutex> lock(mu_);
    beats_.push_back(beat);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    health_streams_.erase(std::find(health_streams_.begin(), health_streams_.end(), stream));
  }
  --open_health_streams_;
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::GetJobStatus(grpc::ServerContext* context,
                                           const v1::JobStatusRequest* request,
                                           v1::JobStatus* response) {
  if (grpc::Status s = Admit(context, "GetJobStatus", request->header()); !s.ok()) return s;
  response->set_job_id(job_id_);
  response->set_phase(v1::JOB_PHASE_WAITING);
  std::lock_guard<std::mutex> lock(mu_);
  response->set_nodes_joined(static_cast<int>(joined_.size()));
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::WatchEvents(grpc::ServerContext* context,
                                          const v1::WatchEventsRequest* request,
                                          grpc::ServerWriter<v1::JobEvent>* writer) {
  if (grpc::Status s = Admit(context, "WatchEvents", request->header()); !s.ok()) return s;
  std::vector<v1::JobEvent> events;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events = events_;
  }
  for (const v1::JobEvent& e : events) {
    if (!writer->Write(e)) break;
  }
  return grpc::Status::OK;
}

}  // namespace colossus::launcher::testing
