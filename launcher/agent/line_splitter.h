// LineSplitter: cuts a byte stream (a worker's stdout or stderr, read in arbitrary
// chunks) into lines, so that the agent echoes whole lines with a "[rank R] " prefix and
// lines of different ranks never interleave mid-line.
//
// A line longer than max_line bytes is emitted in pieces of max_line bytes (a worker
// printing megabytes without a newline must not grow the agent without bound). Lines are
// passed without their '\n'. Not thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace colossus::launcher::internal {

class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line = 64 * 1024) : max_line_(max_line) {}

  // Calls on_line(std::string_view) for every complete line in partial + data.
  template <typename OnLine>
  void Append(std::string_view data, OnLine&& on_line) {
    while (!data.empty()) {
      const size_t nl = data.find('\n');
      const size_t take = nl == std::string_view::npos ? data.size() : nl;
      const size_t room = max_line_ - partial_.size();
      if (take >= room) {
        // Fills a whole piece: emit it (a newline right at the limit ends this piece).
        partial_.append(data.substr(0, room));
        on_line(std::string_view(partial_));
        partial_.clear();
        data.remove_prefix(room);
        if (take == room && nl != std::string_view::npos) data.remove_prefix(1);
        continue;
      }
      if (nl == std::string_view::npos) {
        partial_.append(data);
        return;
      }
      if (partial_.empty()) {
        on_line(data.substr(0, nl));
      } else {
        partial_.append(data.substr(0, nl));
        on_line(std::string_view(partial_));
        partial_.clear();
      }
      data.remove_prefix(nl + 1);
    }
  }

  // Emits the unterminated tail, if any (at end of stream).
  template <typename OnLine>
  void Flush(OnLine&& on_line) {
    if (!partial_.empty()) {
      on_line(std::string_view(partial_));
      partial_.clear();
    }
  }

 private:
  size_t max_line_;
  std::string partial_;
};

}  // namespace colossus::launcher::internal
