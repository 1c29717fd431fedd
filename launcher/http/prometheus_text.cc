#include "colossus/launcher/prometheus_text.h"

#include <charconv>
#include <cmath>

#include "colossus/check.h"

namespace colossus::launcher {
namespace {

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool ValidMetricName(std::string_view name) {
  if (name.empty() || IsDigit(name[0])) return false;
  for (char c : name) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '_' && c != ':') return false;
  }
  return true;
}

bool ValidLabelName(std::string_view name) {
  if (name.empty() || IsDigit(name[0]) || name.substr(0, 2) == "__") return false;
  for (char c : name) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '_') return false;
  }
  return true;
}

// HELP text escapes backslash and newline; label values also escape the double quote
// that would otherwise end them.
void AppendEscaped(std::string_view text, bool quote, std::string* out) {
  for (char c : text) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (quote && c == '"') {
      *out += "\\\"";
    } else {
      *out += c;
    }
  }
}

void AppendValue(double v, std::string* out) {
  if (std::isnan(v)) {
    *out += "NaN";
  } else if (std::isinf(v)) {
    *out += v > 0 ? "+Inf" : "-Inf";
  } else {
    // Shortest representation that parses back to the same double (Go's ParseFloat on
    // the Prometheus side reads it exactly).
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    CHECK(ec == std::errc()) << "to_chars of " << v;
    out->append(buf, end);
  }
}

}  // namespace

void PrometheusText::Gauge(std::string_view name, std::string_view help, double value,
                           const std::vector<std::pair<std::string, std::string>>& labels) {
  Add("gauge", name, help, value, labels);
}

void PrometheusText::Counter(std::string_view name, std::string_view help, double value,
                             const std::vector<std::pair<std::string, std::string>>& labels) {
  CHECK(!(value < 0)) << "counter " << name << " is negative: " << value;
  Add("counter", name, help, value, labels);
}

void PrometheusText::Add(std::string_view type, std::string_view name, std::string_view help,
                         double value,
                         const std::vector<std::pair<std::string, std::string>>& labels) {
  CHECK(ValidMetricName(name)) << "invalid Prometheus metric name '" << name << "'";
  auto it = index_.find(name);
  if (it == index_.end()) {
    it = index_.emplace(std::string(name), families_.size()).first;
    families_.push_back(Family{std::string(name), std::string(help), std::string(type), {}, {}});
  }
  Family& family = families_[it->second];
  CHECK(family.type == type) << "metric " << name << " added as " << type << " after "
                             << family.type;

  std::string label_text;
  if (!labels.empty()) {
    std::set<std::string_view> seen;
    label_text += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      const auto& [key, val] = labels[i];
      CHECK(ValidLabelName(key)) << "invalid label name '" << key << "' on metric " << name;
      CHECK(seen.insert(key).second) << "label " << key << " repeated on metric " << name;
      if (i > 0) label_text += ',';
      label_text += key;
      label_text += "=\"";
      AppendEscaped(val, /*quote=*/true, &label_text);
      label_text += '"';
    }
    label_text += '}';
  }
  CHECK(family.label_sets.insert(label_text).second)
      << "metric " << name << label_text << " added twice";

  family.samples += family.name;
  family.samples += label_text;
  family.samples += ' ';
  AppendValue(value, &family.samples);
  family.samples += '\n';
}

std::string PrometheusText::str() const {
  std::string out;
  for (const Family& f : families_) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    AppendEscaped(f.help, /*quote=*/false, &out);
    out += "\n# TYPE ";
    out += f.name;
    out += ' ';
    out += f.type;
    out += '\n';
    out += f.samples;
  }
  return out;
}

}  // namespace colossus::launcher
