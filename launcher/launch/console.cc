#include "console.h"

#include <unistd.h>

namespace colossus::launcher {
namespace {

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n <= 0) return;  // a closed terminal loses output, never the job
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

void Console::EraseLocked() {
  if (drawn_) WriteAll(2, "\r\033[K");
  drawn_ = false;
}

void Console::DrawLocked() {
  if (!status_line_ || status_.empty()) return;
  WriteAll(2, status_);
  drawn_ = true;
}

void Console::Line(int fd, std::string_view line) {
  std::string text(line);
  text.push_back('\n');
  std::lock_guard lock(mu_);
  EraseLocked();
  WriteAll(fd, text);
  DrawLocked();
}

void Console::Info(std::string_view text) {
  std::string line = "[colossus] ";
  line.append(text);
  Line(2, line);
}

void Console::Status(std::string_view text) {
  if (!status_line_) return;
  std::lock_guard lock(mu_);
  EraseLocked();
  status_ = std::string(text);
  DrawLocked();
}

void Console::ClearStatus() {
  std::lock_guard lock(mu_);
  EraseLocked();
  status_.clear();
}

}  // namespace colossus::launcher
