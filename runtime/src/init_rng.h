// NormalRng: the weight-initialisation random stream.
//
// Written out rather than taken from <random> because std::normal_distribution's
// algorithm is implementation-defined: the same seed must give the same weights with
// any standard library, on any backend, so checkpoints and cross-implementation tests
// (PyTorch loads our weights) stay reproducible.
#pragma once

#include <cmath>
#include <cstdint>

namespace colossus {

// splitmix64 (Steele, Lea, Flood 2014): a strong 64-bit mixer, used both as a
// generator and to derive independent streams from (seed, stream).
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
inline uint64_t SplitMix64(uint64_t x) { return Mix64(x + 0x9e3779b97f4a7c15ull); }

class NormalRng {
 public:
  NormalRng(uint64_t seed, uint64_t stream)
      : state_(SplitMix64(seed ^ SplitMix64(stream + 0x632be59bd9b4e019ull))) {}

  // A standard normal draw (Box-Muller; the second value of each pair is kept).
  float Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    // u1 in (0, 1] so log(u1) is finite; 53 random bits each.
    const double u1 = (static_cast<double>(NextBits() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(NextBits() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * M_PI * u2;
    spare_ = static_cast<float>(r * std::sin(theta));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(theta));
  }

  uint64_t NextBits() {
    state_ += 0x9e3779b97f4a7c15ull;
    return Mix64(state_);
  }

 private:
  uint64_t state_;
  bool has_spare_ = false;
  float spare_ = 0.0f;
};

}  // namespace colossus
