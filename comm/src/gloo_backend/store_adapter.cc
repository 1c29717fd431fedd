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
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = fetched_.find(key); it != fetched_.end()) {
      std::vector<char> data(it->second.begin(), it->second.end());
      fetched_.erase(it);
      return data;
    }
  }
  absl::StatusOr<std::string> v = store_->WaitGet(key, wait_timeout_);
  if (!v.ok()) Throw(v.status());
  return std::vector<char>(v->begin(), v->end());
}

void GlooStoreAdapter::WaitAndKeep(const std::vector<std::string>& keys, absl::Duration timeout) {
  absl::StatusOr<std::vector<std::string>> values = store_->WaitGet(keys, timeout);
  if (!values.ok()) Throw(values.status());
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < keys.size(); ++i) fetched_[keys[i]] = std::move((*values)[i]);
}

void GlooStoreAdapter::wait(const std::vector<std::string>& keys) { WaitAndKeep(keys, wait_timeout_); }

void GlooStoreAdapter::wait(const std::vector<std::string>& keys,
                            const std::chrono::milliseconds& timeout) {
  // Gloo passes its context timeout; never wait longer than we were told to.
  WaitAndKeep(keys, std::min(absl::FromChrono(timeout), wait_timeout_));
}

}  // namespace colossus::comm::internal
