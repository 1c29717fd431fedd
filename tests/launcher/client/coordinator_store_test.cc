// CoordinatorStore against the in-test fake: comm's Store contract, a Gloo group over
// it, and the key scope reaching the coordinator.
#include "colossus/launcher/coordinator_store.h"

#include "fake_coordinator.h"
#include "store_contract.h"

namespace colossus::launcher::testing {
namespace {

class FakeFactory {
 public:
  std::shared_ptr<comm::Store> Fresh(v1::KeyScope scope = v1::KEY_SCOPE_GENERATION) {
    CoordinatorClientOptions o;
    o.channel.target = fake_.target();
    o.token = "secret";
    o.job_id = "job1";
    absl::StatusOr<std::unique_ptr<CoordinatorClient>> client = CoordinatorClient::Create(o);
    if (!client.ok()) std::abort();
    return std::make_shared<CoordinatorStore>(std::shared_ptr<CoordinatorClient>(*std::move(client)),
                                              scope);
  }
  FakeCoordinator& fake() { return fake_; }

 private:
  FakeCoordinator fake_{"job1", "secret"};
};

INSTANTIATE_TYPED_TEST_SUITE_P(Fake, StoreContractTest, FakeFactory);


TEST(CoordinatorStoreTest, ScopesAreSeparateKeySpaces) {
  FakeFactory f;
  auto gen = f.Fresh();
  auto job = f.Fresh(v1::KEY_SCOPE_JOB);
  ASSERT_TRUE(gen->Set("k", "generation").ok());
  ASSERT_TRUE(job->Set("k", "job").ok());
  EXPECT_EQ(*gen->Get("k"), "generation");
  EXPECT_EQ(*job->Get("k"), "job");
}

TEST(CoordinatorStoreTest, AnUnreachableCoordinatorIsUnavailable) {
  CoordinatorClientOptions o;
  o.channel.target = "127.0.0.1:" + std::to_string(UnusedPort());
  o.job_id = "job1";
  o.retry.initial_backoff = absl::Milliseconds(10);
  o.retry.max_elapsed = absl::Milliseconds(200);
  CoordinatorStore store(std::shared_ptr<CoordinatorClient>(*CoordinatorClient::Create(o)));
  absl::Status st = store.Set("addr/0", "x");
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(st), ::testing::HasSubstr("addr/0"));
  EXPECT_EQ(store.Wait({"addr/0"}, absl::Milliseconds(200)).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace colossus::launcher::testing

// comm's own Store contract, the same assertions its in-memory and TCP stores pass.
namespace colossus::comm::testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Fake, StoreContract, colossus::launcher::testing::FakeFactory);
}  // namespace colossus::comm::testing
