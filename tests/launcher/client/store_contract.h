// CoordinatorStore under comm's Store contract (tests/comm/store_contract.h, the same
// assertions comm's own stores pass) plus a Gloo group formed over it.
// Type-parameterized over a factory:
//   struct Factory {
//     std::shared_ptr<comm::Store> Fresh();  // a new client (own connection) of the
//                                            // same coordinator and generation
//   };
// instantiated against the in-test fake (coordinator_store_test.cc) and the real
// coordinator (integration_test.cc).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "colossus/comm/gloo.h"
#include "comm/store_contract.h"
#include "colossus/launcher/coordinator_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher::testing {

template <typename F>
class StoreContractTest : public ::testing::Test {
 protected:
  F factory_;
};

TYPED_TEST_SUITE_P(StoreContractTest);

inline std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Three ranks (threads, each with its own coordinator connection) form a Gloo group over
// the coordinator's store and all-reduce: the rendezvous workers will use at scale.
TYPED_TEST_P(StoreContractTest, GlooGroupFormsOverTheStoreAndAllReduces) {
  constexpr int kRanks = 3;
  constexpr size_t kCount = 1000;
  std::vector<absl::Status> results(kRanks);
  std::vector<std::vector<float>> data(kRanks, std::vector<float>(kCount));
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      comm::GlooOptions o;
      o.comm.timeout = absl::Seconds(20);
      o.comm.init_timeout = absl::Seconds(20);
      absl::StatusOr<std::unique_ptr<comm::Communicator>> c =
          comm::CreateGlooCommunicator(this->factory_.Fresh(), r, kRanks, o);
      if (!c.ok()) {
        results[r] = c.status();
        return;
      }
      for (size_t i = 0; i < kCount; ++i) data[r][i] = static_cast<float>((r + 1) * i);
      results[r] = (*c)->AllReduce(data[r].data(), data[r].data(), kCount, comm::DataType::kF32,
                                   comm::ReduceOp::kSum)
                       .Wait();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r];
    for (size_t i = 0; i < kCount; i += 97) EXPECT_EQ(data[r][i], 6.0f * i) << "rank " << r;
  }
}

REGISTER_TYPED_TEST_SUITE_P(StoreContractTest, GlooGroupFormsOverTheStoreAndAllReduces);

}  // namespace colossus::launcher::testing
