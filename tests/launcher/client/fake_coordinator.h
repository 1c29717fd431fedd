// FakeCoordinator: a small in-test coordinator on gRPC's synchronous service API, enough
// to check the client's side of the contract: token and header on every call, status
// mapping, retries (scripted UNAVAILABLE answers), held Join and StoreWait with their
// timeouts, health streams and job events. Not the real server (launcher/coordinator/):
// one generation, no fencing, no journal.
//
// Thread safety: the accessors and the scripting methods may be called from the test's
// threads while the server runs.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "colossus/coordinator/v1/coordinator.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace colossus::launcher::testing {

namespace v1 = ::colossus::coordinator::v1;

class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  // Serves on 127.0.0.1:port (0: a free port) for job `job_id` with token `token`.
  // Nodes: a Join is held until `nodes` nodes have joined (then generation 1 forms).
  FakeCoordinator(std::string job_id, std::string token, int nodes = 1, int port = 0);
  ~FakeCoordinator() override;

  int port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  // Stops serving: open calls end with UNAVAILABLE/CANCELLED on the client's side.
  void Stop();

  // ---- scripting ----
  // The next n calls (of any RPC, after auth) fail with UNAVAILABLE "fake: scripted".
  void FailNext(int n) { fail_next_ = n; }
  // Join ignores its timeout_ms and holds until Stop (for the client's own deadline).
  void HoldJoinsForever() { hold_joins_forever_ = true; }
  // Writes `command` to every open health stream.
  void PushCommand(const v1::Command& command);
  // Health streams end at once with this status (instead of reading beats).
  void RefuseHealth(grpc::Status status);
  // Events WatchEvents sends before it ends the stream with OK.
  void SetEvents(std::vector<v1::JobEvent> events);

  // ---- what the fake saw ----
  int64_t calls(const std::string& rpc) const;  // attempts that reached the fake
  std::vector<std::string> tokens_seen() const;
  int64_t last_generation() const { return last_generation_.load(); }
  std::set<std::string> peers() const;  // distinct client addresses (one per connection)
  std::vector<v1::NodeHealth> beats() const;
  int open_health_streams() const { return open_health_streams_.load(); }
  // Whether the last call of `rpc` arrived with a gRPC deadline (grpc-timeout).
  bool had_deadline(const std::string& rpc) const;

  // ---- the service ----
  grpc::Status Join(grpc::ServerContext*, const v1::JoinRequest*, v1::JoinResponse*) override;
  grpc::Status StoreSet(grpc::ServerContext*, const v1::StoreSetRequest*,
                        v1::StoreSetResponse*) override;
  grpc::Status StoreGet(grpc::ServerContext*, const v1::StoreGetRequest*,
                        v1::StoreGetResponse*) override;
  grpc::Status StoreWait(grpc::ServerContext*, const v1::StoreWaitRequest*,
                         v1::StoreWaitResponse*) override;
  grpc::Status StoreAdd(grpc::ServerContext*, const v1::StoreAddRequest*,
                        v1::StoreAddResponse*) override;
  grpc::Status StoreCompareSet(grpc::ServerContext*, const v1::StoreCompareSetRequest*,
                               v1::StoreCompareSetResponse*) override;
  grpc::Status StoreDelete(grpc::ServerContext*, const v1::StoreDeleteRequest*,
                           v1::StoreDeleteResponse*) override;
  grpc::Status Health(grpc::ServerContext*,
                      grpc::ServerReaderWriter<v1::Command, v1::NodeHealth>*) override;
  grpc::Status GetJobStatus(grpc::ServerContext*, const v1::JobStatusRequest*,
                            v1::JobStatus*) override;
  grpc::Status WatchEvents(grpc::ServerContext*, const v1::WatchEventsRequest*,
                           grpc::ServerWriter<v1::JobEvent>*) override;

 private:
  // Auth, job id, scripted failures and bookkeeping common to every RPC.
  grpc::Status Admit(grpc::ServerContext* context, const std::string& rpc,
                     const v1::RequestHeader& header);
  std::map<std::string, std::string>& Table(v1::KeyScope scope);  // REQUIRES mu_

  const std::string job_id_;
  const std::string token_;
  const int nodes_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<int> fail_next_{0};
  std::atomic<bool> hold_joins_forever_{false};
  std::atomic<int64_t> last_generation_{-1};
  std::atomic<int> open_health_streams_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, int64_t> calls_;
  std::map<std::string, bool> had_deadline_;
  std::vector<std::string> tokens_;
  std::set<std::string> peers_;
  std::map<std::string, std::string> generation_keys_, job_keys_;
  std::map<std::string, v1::JoinRequest> joined_;  // by node_id
  std::vector<v1::NodeHealth> beats_;
  std::vector<grpc::ServerReaderWriter<v1::Command, v1::NodeHealth>*> health_streams_;
  bool refuse_health_ = false;
  grpc::Status health_refusal_;
  std::vector<v1::JobEvent> events_;
};

// A port nothing listens on right now (bound and released; racy only against other
// processes picking the same port within milliseconds).
int UnusedPort();

}  // namespace colossus::launcher::testing
