// The host-clock OpTimer and the choice of clock by backend (op_timer.h).
#include "colossus/kernels/op_timer.h"

#include <chrono>

#include "cuda/op_timer_cuda.h"

namespace colossus::kernels {
namespace {

// CPU ops complete before returning: the host clock at Mark is the end of what ran.
class HostOpTimer final : public OpTimer {
 public:
  void Mark() override { marks_.push_back(std::chrono::steady_clock::now()); }
  std::vector<double> Resolve() override {
    std::vector<double> ms;
    ms.reserve(marks_.size());
    for (const auto& t : marks_) {
      ms.push_back(std::chrono::duration<double, std::milli>(t - marks_.front()).count());
    }
    marks_.clear();
    return ms;
  }

 private:
  std::vector<std::chrono::steady_clock::time_point> marks_;
};

}  // namespace

std::unique_ptr<OpTimer> MakeOpTimer(const Backend& backend) {
  if (backend.kind() == DeviceKind::kCUDA) return cuda::MakeCudaEventTimer(backend);
  return std::make_unique<HostOpTimer>();
}

}  // namespace colossus::kernels
