// CHECK: broken invariants inside a module abort with file, line and a message.
//
// Errors a caller can act on (bad config, I/O, a dead peer) travel as absl::Status;
// CHECK is for bugs. Debian's abseil (20220623) has no absl/log, hence this header.
//   CHECK(n >= 0) << "negative size " << n;
#pragma once

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace colossus::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": CHECK failed: " << condition << ": ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `CHECK(x) << ...` be a single expression whose stream part is only evaluated
// when the check fails.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace colossus::internal

#ifndef CHECK
#define CHECK(condition)                                    \
  (condition) ? (void)0                                     \
              : ::colossus::internal::Voidify() &           \
                    ::colossus::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()
#endif
