// Console: colossus-launch's terminal. Lines (the ranks' output relayed by the agents,
// job events) and, on a TTY, one live status line kept at the bottom of stderr: before a
// line is written the status line is erased, after it the status line is drawn again, so
// the two never mix. Without a TTY there is no status line and lines pass straight
// through.
//
// Thread safety: every method may be called from any thread (one mutex; each line is one
// write(2)).
#pragma once

#include <mutex>
#include <string>
#include <string_view>

namespace colossus::launcher {

class Console {
 public:
  // status_line: draw the status line (only sensible when stderr is a TTY).
  explicit Console(bool status_line) : status_line_(status_line) {}

  // Writes one line (a '\n' is added) to fd 1 or 2.
  void Line(int fd, std::string_view line);
  // "[colossus] <text>" on stderr.
  void Info(std::string_view text);
  // Replaces the status line (no-op without one).
  void Status(std::string_view text);
  // Erases the status line for good (before the final summary).
  void ClearStatus();

 private:
  void EraseLocked();
  void DrawLocked();

  std::mutex mu_;
  const bool status_line_;
  std::string status_;
  bool drawn_ = false;
};

}  // namespace colossus::launcher
