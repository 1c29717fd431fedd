// Where a training run reports progress: JSON lines for machines, and for people
// either a live progress bar (on a TTY) or one plain line every few steps.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"

namespace colossus {

struct StepRecord {
  int64_t step = 0;         // 0-based optimizer step just completed
  int64_t total_steps = 0;
  float loss = 0.0f;
  float lr = 0.0f;
  float grad_norm = 0.0f;
  double tokens_per_s = 0.0;
  double step_ms = 0.0;
  double elapsed_s = 0.0;
  double mfu = -1.0;        // model FLOPs utilisation (0.45 = 45%, mfu.h); < 0: unknown, not shown
};

// Appends one JSON object per line to a file; every line is flushed so a crash loses
// at most the line being written. Not thread-safe.
class JsonLinesWriter {
 public:
  static absl::StatusOr<std::unique_ptr<JsonLinesWriter>> Open(const std::string& path);
  ~JsonLinesWriter();
  // `json` must be one complete JSON object without a newline.
  void Write(const std::string& json);
  const std::string& path() const { return path_; }

 private:
  JsonLinesWriter(std::string path, std::FILE* f) : path_(std::move(path)), file_(f) {}
  std::string path_;
  std::FILE* file_;
};

// {"step":..,"loss":..,"lr":..,"grad_norm":..,"tokens_per_s":..,"step_ms":..,
//  "elapsed_s":..} plus "mfu" (a fraction) when r.mfu >= 0.
std::string StepRecordJson(const StepRecord& r);

// Console progress on `out` (stderr by default). On a TTY it redraws one status line
// ("[#####.....] step 120/500 loss 2.134 | 41.2k tok/s | ETA 1m12s"; "| MFU 45.1%" after
// the tokens/s when the record has one); elsewhere (CI, a log file) it prints a full line
// every `every` steps and on the last step.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(int64_t every, std::FILE* out = stderr);
  void Step(const StepRecord& r);
  // Prints a full line of its own (eval results, samples) without garbling the bar.
  void Line(const std::string& text);
  bool tty() const { return tty_; }

 private:
  int64_t every_;
  std::FILE* out_;
  bool tty_;
  bool bar_drawn_ = false;
};

// "1h02m", "3m05s", "12s".
std::string FormatDuration(double seconds);

}  // namespace colossus
