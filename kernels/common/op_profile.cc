// OpProfile's shares and its two renderings (profiling_backend.h).
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "colossus/kernels/profiling_backend.h"

namespace colossus::kernels {
namespace {

// A JSON string's body: quotes, backslashes and control characters escaped.
std::string JsonEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

const char* OpCategoryName(OpCategory c) {
  switch (c) {
    case OpCategory::kGemm:
      return "gemm";
    case OpCategory::kAttention:
      return "attention";
    case OpCategory::kOther:
      return "other";
    case OpCategory::kHostCopy:
      return "host_copy";
  }
  return "?";
}

double OpProfile::NonGemmShare() const {
  if (span_ms <= 0) return 0;
  return (ops_ms - CategoryMs(OpCategory::kGemm)) / span_ms;
}

double OpProfile::NonGemmShareExcludingAttention() const {
  if (span_ms <= 0) return 0;
  return (ops_ms - CategoryMs(OpCategory::kGemm) - CategoryMs(OpCategory::kAttention)) /
         span_ms;
}

std::string OpProfile::Table() const {
  if (ops.empty()) return "profile: no ops recorded\n";
  const double n = static_cast<double>(steps);
  auto pct = [&](double ms) { return span_ms > 0 ? 100.0 * ms / span_ms : 0.0; };
  std::string out = absl::StrFormat(
      "profile of %d step%s on %s: %.3f ms per step from the first op's start to the last "
      "op's end\n",
      steps, steps == 1 ? "" : "s", backend, span_ms / n);
  absl::StrAppendFormat(&out, "  %-26s %-10s %9s %12s %8s\n", "op", "category", "calls/step",
                        "ms/step", "% step");
  for (const OpStats& s : ops) {
    absl::StrAppendFormat(&out, "  %-26s %-10s %9.1f %12.3f %7.1f%%\n", s.op,
                          OpCategoryName(s.category), s.calls / n, s.total_ms / n,
                          pct(s.total_ms));
  }
  absl::StrAppendFormat(&out, "  %-26s %-10s %9s %12.3f %7.1f%%\n", "(between ops)", "", "",
                        between_ops_ms() / n, pct(between_ops_ms()));
  out += "  by category:";
  for (int c = 0; c < kNumOpCategories; ++c) {
    absl::StrAppendFormat(&out, " %s %.1f%%", OpCategoryName(static_cast<OpCategory>(c)),
                          pct(category_ms[c]));
  }
  absl::StrAppendFormat(&out, ", between ops %.1f%%\n", pct(between_ops_ms()));
  absl::StrAppendFormat(&out,
                        "  non-GEMM kernels: %.1f%% of the step (%.1f%% without attention)\n",
                        100.0 * NonGemmShare(), 100.0 * NonGemmShareExcludingAttention());
  return out;
}

std::string OpProfile::Json() const {
  // %.9g keeps a double's figures readable and exact enough for ratios.
  std::string out = absl::StrFormat(
      "{\"backend\":\"%s\",\"steps\":%d,\"span_ms\":%.9g,\"ops_ms\":%.9g,"
      "\"between_ops_ms\":%.9g,\"non_gemm_share\":%.9g,"
      "\"non_gemm_share_excluding_attention\":%.9g,\"category_ms\":{",
      JsonEscape(backend), steps, span_ms, ops_ms, between_ops_ms(), NonGemmShare(),
      NonGemmShareExcludingAttention());
  for (int c = 0; c < kNumOpCategories; ++c) {
    absl::StrAppendFormat(&out, "%s\"%s\":%.9g", c ? "," : "",
                          OpCategoryName(static_cast<OpCategory>(c)), category_ms[c]);
  }
  out += "},\"ops\":[";
  for (size_t i = 0; i < ops.size(); ++i) {
    absl::StrAppendFormat(&out, "%s{\"op\":\"%s\",\"category\":\"%s\",\"calls\":%d,"
                          "\"total_ms\":%.9g}",
                          i ? "," : "", ops[i].op, OpCategoryName(ops[i].category),
                          ops[i].calls, ops[i].total_ms);
  }
  out += "]}";
  return out;
}

}  // namespace colossus::kernels
