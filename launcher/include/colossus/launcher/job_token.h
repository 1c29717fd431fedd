// The job's secret token on the wire: the metadata key every call carries it under, and
// the one comparison that checks it (the coordinator's service and each node's store
// relay use the same, so there is one place to get it right).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace colossus::launcher {

inline constexpr char kTokenMetadata[] = "x-colossus-token";

// True when `given` equals `expected`, in time that depends on the lengths only: every
// byte of the longer string is compared, so the time says nothing about where the first
// difference is (a caller cannot guess the token a byte at a time).
inline bool TokenMatches(std::string_view expected, std::string_view given) {
  const size_t n = std::max(expected.size(), given.size());
  unsigned char diff = expected.size() == given.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char a = i < expected.size() ? static_cast<unsigned char>(expected[i]) : 0;
    const unsigned char b = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(a ^ b);
  }
  // Keep the compiler from turning the loop into an early-exit comparison.
  volatile unsigned char result = diff;
  return result == 0;
}

}  // namespace colossus::launcher
