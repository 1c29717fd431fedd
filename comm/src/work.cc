#include "colossus/comm/work.h"

#include <utility>

#include "colossus/check.h"

namespace colossus::comm {
namespace {

class CompletedState final : public WorkState {
 public:
  explicit CompletedState(absl::Status status) : status_(std::move(status)) {}
  absl::Status Wait(absl::Duration) override { return status_; }
  bool Done() override { return true; }

 private:
  const absl::Status status_;
};

}  // namespace

Work Work::Completed(absl::Status status) {
  return Work(std::make_shared<CompletedState>(std::move(status)));
}

Work::Work(std::shared_ptr<WorkState> state) : state_(std::move(state)) {
  CHECK(state_ != nullptr) << "Work without a state";
}

absl::Status Work::Wait(absl::Duration timeout) const { return state_->Wait(timeout); }

bool Work::Done() const { return state_->Done(); }

}  // namespace colossus::comm
