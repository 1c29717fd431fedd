// The Store contract (store_contract.h), run against every implementation of comm:
// in-memory, TCP, and a prefix view of each; and what PrefixStore adds.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "colossus/comm/in_memory_store.h"
#include "colossus/comm/prefix_store.h"
#include "colossus/comm/tcp_store.h"
#include "store_contract.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::comm {
namespace {


using ::testing::HasSubstr;
using ::testing::Not;

// Makes stores of one kind; Fresh() returns another client of the same data.
class StoreFactory {
 public:
  virtual ~StoreFactory() = default;
  virtual std::shared_ptr<Store> Fresh() = 0;
};

class InMemoryFactory : public StoreFactory {
 public:
  std::shared_ptr<Store> Fresh() override { return store_; }

 private:
  std::shared_ptr<Store> store_ = std::make_shared<InMemoryStore>();
};

class TcpFactory : public StoreFactory {
 public:
  TcpFactory() {
    auto server = TcpStoreServer::Start();
    DieUnlessOk(server);
    server_ = *std::move(server);
  }
  std::shared_ptr<Store> Fresh() override {
    auto client = TcpStore::Connect("127.0.0.1", server_->port());
    DieUnlessOk(client);
    return std::shared_ptr<Store>(*std::move(client));
  }

 private:
  static void DieUnlessOk(const auto& s) {
    if (!s.ok()) {
      ADD_FAILURE() << s.status();
      std::abort();
    }
  }
  std::unique_ptr<TcpStoreServer> server_;
};

template <typename Base>
class PrefixFactory : public Base {
 public:
  std::shared_ptr<Store> Fresh() override {
    return std::make_shared<PrefixStore>(Base::Fresh(), "job7/gen3");
  }
};

using Factories = ::testing::Types<InMemoryFactory, TcpFactory, PrefixFactory<InMemoryFactory>,
                                   PrefixFactory<TcpFactory>>;
}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Comm, StoreContract, Factories);
}  // namespace testing
namespace {

TEST(PrefixStoreTest, PrefixesDoNotSeeEachOther) {
  auto base = std::make_shared<InMemoryStore>();
  PrefixStore gen1(base, "gen1"), gen2(base, "gen2");
  ASSERT_TRUE(gen1.Set("addr/0", "a").ok());
  EXPECT_EQ(gen2.Get("addr/0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*base->Get("gen1/addr/0"), "a");
  PrefixStore nested(std::make_shared<PrefixStore>(base, "job"), "gen3");
  ASSERT_TRUE(nested.Set("k", "v").ok());
  EXPECT_EQ(*base->Get("job/gen3/k"), "v");
  absl::Status st = gen2.Wait({"addr/0"}, absl::Milliseconds(20));
  EXPECT_THAT(std::string(st.message()), HasSubstr("gen2/addr/0"));
}

}  // namespace
}  // namespace colossus::comm
