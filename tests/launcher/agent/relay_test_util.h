// Helpers of the store relay's tests: a relay in front of a coordinator (the in-test fake
// or the real one), and workers' stores that reach it over its unix socket.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "colossus/launcher/coordinator_client.h"
#include "colossus/launcher/coordinator_store.h"
#include "colossus/launcher/store_relay.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace colossus::launcher::testing {

// Client options of a worker: to `target` (the relay's "unix:..." or the coordinator),
// short retries so that failures show within the test.
inline CoordinatorClientOptions WorkerClientOptions(const std::string& target, const std::string& job,
                                                    const std::string& token, int64_t generation = 0) {
  CoordinatorClientOptions o;
  o.channel.target = target;
  o.job_id = job;
  o.token = token;
  o.initial_generation = generation;
  o.call_timeout = absl::Seconds(10);
  o.retry.initial_backoff = absl::Milliseconds(20);
  o.retry.max_backoff = absl::Milliseconds(200);
  o.retry.max_elapsed = absl::Seconds(2);
  o.retry.held_max_elapsed = absl::Seconds(2);
  if (target.rfind("unix:", 0) == 0) o.peer_name = "store relay " + target;
  return o;
}

inline std::shared_ptr<CoordinatorClient> NewWorkerClient(const CoordinatorClientOptions& o) {
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> c = CoordinatorClient::Create(o);
  if (!c.ok()) {
    ADD_FAILURE() << c.status();
    std::abort();
  }
  return std::shared_ptr<CoordinatorClient>(*std::move(c));
}

// A relay in a fresh directory whose upstream is `coordinator` (host:port).
class RelayUnderTest {
 public:
  RelayUnderTest(const std::string& coordinator, const std::string& token) {
    CoordinatorChannelOptions co;
    co.target = coordinator;
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeCoordinatorChannel(co);
    if (!channel.ok()) std::abort();
    StoreRelayOptions ro;
    ro.socket_path = dir_ / "store.sock";
    ro.upstream = *channel;
    ro.token = token;
    ro.call_timeout = absl::Seconds(10);
    ro.retry_initial_backoff = absl::Milliseconds(20);
    ro.retry_max_backoff = absl::Milliseconds(200);
    absl::StatusOr<std::unique_ptr<StoreRelay>> relay = StoreRelay::Start(std::move(ro));
    if (!relay.ok()) {
      ADD_FAILURE() << relay.status();
      std::abort();
    }
    relay_ = *std::move(relay);
  }
  StoreRelay& relay() { return *relay_; }
  const std::string& target() const { return relay_->target(); }
  std::string socket_path() const { return dir_ / "store.sock"; }
  void Stop() { relay_->Stop(); }

 private:
  TempDir dir_;  // destroyed after the relay (declared first)
  std::unique_ptr<StoreRelay> relay_;
};

// Waits (bounded) until the relay has taken `n` local StoreWaits in all.
inline bool WaitForLocalWaits(StoreRelay& relay, int64_t n) {
  return WaitUntil([&] { return relay.stats().local_waits >= n; }, 20);
}

}  // namespace colossus::launcher::testing
