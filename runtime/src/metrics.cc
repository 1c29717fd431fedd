#include "colossus/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace colossus {

absl::StatusOr<std::unique_ptr<JsonLinesWriter>> JsonLinesWriter::Open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    return absl::UnavailableError(
        absl::StrFormat("%s: cannot open for appending: %s", path, std::strerror(errno)));
  }
  return std::unique_ptr<JsonLinesWriter>(new JsonLinesWriter(path, f));
}

JsonLinesWriter::~JsonLinesWriter() { std::fclose(file_); }

void JsonLinesWriter::Write(const std::string& json) {
  std::fputs(json.c_str(), file_);
  std::fputc('\n', file_);
  std::fflush(file_);
}

std::string StepRecordJson(const StepRecord& r) {
  nlohmann::json j = {{"step", r.step},         {"loss", r.loss},
                      {"lr", r.lr},             {"grad_norm", r.grad_norm},
                      {"tokens_per_s", r.tokens_per_s}, {"step_ms", r.step_ms},
                      {"elapsed_s", r.elapsed_s}};
  if (r.mfu >= 0) j["mfu"] = r.mfu;
  return j.dump();
}

std::string FormatDuration(double seconds) {
  if (seconds < 0) seconds = 0;
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

ProgressPrinter::ProgressPrinter(int64_t every, std::FILE* out)
    : every_(every), out_(out), tty_(isatty(fileno(out)) == 1) {}

void ProgressPrinter::Step(const StepRecord& r) {
  const int64_t done = r.step + 1;
  const double eta = done > 0 ? r.elapsed_s / done * (r.total_steps - done) : 0.0;
  const std::string mfu = r.mfu >= 0 ? absl::StrFormat(" | MFU %.1f%%", 100.0 * r.mfu) : "";
  const std::string figures = absl::StrFormat(
      "step %*d/%d | loss %.4f | lr %.2e | norm %.3f | %.1fk tok/s%s | %.0f ms/step | %s elapsed, ETA %s",
      static_cast<int>(std::to_string(r.total_steps).size()), done, r.total_steps, r.loss, r.lr,
      r.grad_norm, r.tokens_per_s / 1e3, mfu, r.step_ms, FormatDuration(r.elapsed_s),
      FormatDuration(eta));
  if (tty_) {
    constexpr int kWidth = 20;
    const int filled = r.total_steps > 0 ? static_cast<int>(kWidth * done / r.total_steps) : kWidth;
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(out_, "\r\033[K[%s] %s", bar.c_str(), figures.c_str());
    bar_drawn_ = true;
    if (done == r.total_steps) {
      std::fputc('\n', out_);
      bar_drawn_ = false;
    }
  } else if (done % every_ == 0 || done == r.total_steps || r.step == 0) {
    std::fprintf(out_, "%s\n", figures.c_str());
  }
  std::fflush(out_);
}

void ProgressPrinter::Line(const std::string& text) {
  if (bar_drawn_) std::fputs("\r\033[K", out_);
  std::fprintf(out_, "%s\n", text.c_str());
  bar_drawn_ = false;
  std::fflush(out_);
}

}  // namespace colossus
