#include "gloo_backend/store_adapter.h"

#include <utility>

#include "gloo/common/error.h"

namespace colossus::comm::internal {
namespace {

[[noreturn]] void Throw(const absl::Status& s) { throw gloo::IoException(s.ToString()); }

}  // namespace

GlooStoreAdapter::GlooStoreAdapter(std::shared_ptr<comm::Store> store, absl::Duration wait_timeout)
    : store_(std::move(store)), wait_timeout_(wait_timeout) {}

void GlooStoreAdapter::set(const std::string& key, const std::vector<char>& data) {
  absl::Status s = store_->Set(key, std::string_view(data.data(), data.size()));
  if (!s.ok()) Throw(s);
}

std::vector<char> GlooStoreAdapter::get(const std::string& key) {
  absl::StatusOr<std::string> v = store_->WaitGet(key, wait_timeout_);
  if (!v.ok()) Throw(v.status());
  return std::vector<char>(v->begin(), v->end());
}

void GlooStoreAdapter::wait(const std::vector<std::string>& keys) {
  absl::Status s = store_->Wait(keys, wait_timeout_);
  if (!s.ok()) Throw(s);
}

void GlooStoreAdapter::wait(const std::vector<std::string>& keys,
                            const std::chrono::milliseconds& timeout) {
  // Gloo passes its context timeout; never wait longer than we were told to.
  const absl::Duration t = std::min(absl::FromChrono(timeout), wait_timeout_);
  absl::Status s = store_->Wait(keys, t);
  if (!s.ok()) Throw(s);
}

}  // namespace colossus::comm::internal
