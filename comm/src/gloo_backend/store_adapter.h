// GlooStoreAdapter: lets Gloo's full-mesh rendezvous run over our Store.
//
// Gloo's Store interface reports failure by throwing; this adapter throws
// gloo::IoException carrying our Status message (which names the keys), and the
// communicator's factory turns it back into a Status. Gloo's get() blocks until the key
// exists, so get() is WaitGet here. Gloo's full mesh waits for a peer's key, then gets
// it: wait() fetches the values with WaitGet and the next get() of each key takes the
// fetched value, so a peer's address costs one store round trip, not two (rendezvous
// keys are written once per group, so the fetched value is the one a Get would read).
//
// Thread safety: as the wrapped Store. Ownership: shares the wrapped Store.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "colossus/comm/store.h"
#include "gloo/rendezvous/store.h"

namespace colossus::comm::internal {

class GlooStoreAdapter final : public gloo::rendezvous::Store {
 public:
  // wait_timeout bounds the waits Gloo makes without giving a timeout of its own.
  GlooStoreAdapter(std::shared_ptr<comm::Store> store, absl::Duration wait_timeout);

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  void WaitAndKeep(const std::vector<std::string>& keys, absl::Duration timeout);

  std::shared_ptr<comm::Store> store_;
  absl::Duration wait_timeout_;
  std::mutex mu_;
  std::map<std::string, std::string> fetched_;  // guarded by mu_: waited for, not yet got
};

}  // namespace colossus::comm::internal
