#include "colossus/generate.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "init_rng.h"

namespace colossus {

absl::StatusOr<std::vector<int>> Generate(GPT& model, const std::vector<int>& prompt, int n,
                                          float temperature, uint64_t seed) {
  if (prompt.empty()) return absl::InvalidArgumentError("Generate: the prompt is empty");
  if (!(temperature > 0)) {
    return absl::InvalidArgumentError(absl::StrFormat("Generate: temperature %g must be > 0", temperature));
  }
  std::vector<int32_t> context(prompt.begin(), prompt.end());
  std::vector<int> out;
  NormalRng rng(seed, /*stream=*/0x5a3b1e);
  std::vector<double> probs;
  for (int i = 0; i < n; ++i) {
    const int T = std::min<int>(static_cast<int>(context.size()), model.max_seq());
    const int32_t* window = context.data() + context.size() - T;
    auto fwd = model.Forward(window, nullptr, 1, T);
    if (!fwd.ok()) return fwd.status();
    const std::vector<float> logits = model.LogitsAt(0, T - 1);
    // Softmax in double with the max subtracted: exp never overflows.
    const float mx = *std::max_element(logits.begin(), logits.end());
    probs.resize(logits.size());
    double sum = 0;
    for (size_t v = 0; v < logits.size(); ++v) {
      probs[v] = std::exp((logits[v] - mx) / temperature);
      sum += probs[v];
    }
    const double u = static_cast<double>(rng.NextBits() >> 11) * 0x1.0p-53 * sum;
    double acc = 0;
    int next = static_cast<int>(logits.size()) - 1;
    for (size_t v = 0; v < probs.size(); ++v) {
      acc += probs[v];
      if (u < acc) {
        next = static_cast<int>(v);
        break;
      }
    }
    out.push_back(next);
    context.push_back(next);
  }
  return out;
}

}  // namespace colossus
