#include "yaml_fields.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "colossus/launcher/manifest.h"

namespace colossus::launcher::manifest_internal {
namespace {

bool IsNullMark(const YAML::Mark& mark) { return mark.line < 0 || mark.column < 0; }

// A plain scalar is one written without quotes or an explicit tag: only those read as
// numbers and booleans, as YAML's core schema has it.
bool IsPlainScalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      const bool same = absl::ascii_tolower(a[i - 1]) == absl::ascii_tolower(b[j - 1]);
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

bool IsEnvName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return absl::ascii_isalnum(c) || c == '_'; });
}

}  // namespace

YAML::Mark Field::mark() const {
  if (value.IsDefined() && !value.IsNull()) return value.Mark();
  return key_mark;
}

Field Field::Element(size_t index, const YAML::Node& element) const {
  return Field{absl::StrCat(path, "[", index, "]"), element, element.Mark()};
}

std::string Position(absl::string_view source, const YAML::Mark& mark) {
  if (IsNullMark(mark)) return std::string(source);
  return absl::StrFormat("%s:%d:%d", source, mark.line + 1, mark.column + 1);
}

absl::Status ErrorAt(absl::string_view source, const YAML::Mark& mark, absl::string_view path,
                     absl::string_view rule) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(Position(source, mark), ": ", rule));
  return absl::InvalidArgumentError(absl::StrCat(Position(source, mark), ": ", path, ": ", rule));
}

std::string Describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  if (IsPlainScalar(node)) return absl::StrCat("'", node.Scalar(), "'");
  return absl::StrCat("the string \"", node.Scalar(), "\"");
}

std::string NearMiss(absl::string_view name, const std::vector<absl::string_view>& candidates) {
  std::string best;
  size_t best_distance = 3;  // a typo is at most two edits away...
  for (absl::string_view candidate : candidates) {
    const size_t d = EditDistance(name, candidate);
    // ...and less than half the word: "log" is not a typo of "key".
    if (d < best_distance && 2 * d < std::max(name.size(), candidate.size())) {
      best_distance = d;
      best = std::string(candidate);
    }
  }
  return best;
}

absl::Status ReadFields(absl::string_view source, const Field& map,
                        const std::vector<FieldRule>& rules,
                        const std::function<std::string(absl::string_view)>& hint) {
  if (map.value.IsNull()) return absl::OkStatus();
  if (!map.value.IsMap()) {
    return FieldError(source, map, absl::StrCat("expected a mapping of fields, got ", Describe(map.value)));
  }
  std::map<std::string, int, std::less<>> seen;  // key -> its line
  for (const auto& entry : map.value) {
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) {
      return ErrorAt(source, key.Mark(), map.path,
                     absl::StrCat("a field name must be a plain word, got ", Describe(key)));
    }
    const std::string& name = key.Scalar();
    const std::string path = map.path.empty() ? name : absl::StrCat(map.path, ".", name);
    if (auto s = seen.find(name); s != seen.end()) {
      return ErrorAt(source, key.Mark(), path,
                     absl::StrFormat("listed twice (first on line %d)", s->second));
    }
    seen.emplace(name, key.Mark().line + 1);
    auto rule = std::find_if(rules.begin(), rules.end(),
                             [&](const FieldRule& r) { return r.name == name; });
    if (rule == rules.end()) {
      std::vector<absl::string_view> names;
      for (const FieldRule& r : rules) names.push_back(r.name);
      std::string advice = hint ? hint(name) : "";
      if (advice.empty()) {
        const std::string near = NearMiss(name, names);
        advice = near.empty() ? absl::StrCat("expected one of: ", absl::StrJoin(names, ", "))
                              : absl::StrCat("did you mean '", near, "'?");
      }
      return ErrorAt(source, key.Mark(), path, absl::StrCat("unknown field (", advice, ")"));
    }
    COLOSSUS_MANIFEST_RETURN_IF_ERROR(rule->read(Field{path, entry.second, key.Mark()}));
  }
  return absl::OkStatus();
}

absl::Status ReadString(absl::string_view source, const Field& field, std::string* out) {
  if (!field.value.IsScalar()) {
    return FieldError(source, field, absl::StrCat("expected a string, got ", Describe(field.value)));
  }
  *out = field.value.Scalar();
  return absl::OkStatus();
}

absl::Status ReadNonEmptyString(absl::string_view source, const Field& field, std::string* out) {
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadString(source, field, out));
  if (out->empty()) return FieldError(source, field, "must not be empty");
  return absl::OkStatus();
}

absl::Status ReadInt(absl::string_view source, const Field& field, int64_t min, int64_t max,
                     int64_t* out) {
  const std::string& text = field.value.IsScalar() ? field.value.Scalar() : "";
  const absl::string_view digits = absl::StartsWith(text, "-") ? absl::string_view(text).substr(1) : text;
  int64_t value = 0;
  if (!IsPlainScalar(field.value) || digits.empty() ||
      !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(text, &value)) {
    return FieldError(source, field, absl::StrCat("expected a whole number, got ", Describe(field.value)));
  }
  if (value < min) return FieldError(source, field, absl::StrFormat("must be at least %d, got %d", min, value));
  if (value > max) return FieldError(source, field, absl::StrFormat("must be at most %d, got %d", max, value));
  *out = value;
  return absl::OkStatus();
}

absl::Status ReadInt(absl::string_view source, const Field& field, int min, int max, int* out) {
  int64_t wide = 0;
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadInt(source, field, int64_t{min}, int64_t{max}, &wide));
  *out = static_cast<int>(wide);
  return absl::OkStatus();
}

absl::Status ReadBool(absl::string_view source, const Field& field, bool* out) {
  const std::string text = IsPlainScalar(field.value) ? field.value.Scalar() : "";
  if (text == "true" || text == "True" || text == "TRUE") {
    *out = true;
  } else if (text == "false" || text == "False" || text == "FALSE") {
    *out = false;
  } else {
    return FieldError(source, field, absl::StrCat("expected true or false, got ", Describe(field.value)));
  }
  return absl::OkStatus();
}

absl::Status ReadDuration(absl::string_view source, const Field& field, absl::Duration* out) {
  if (!field.value.IsScalar()) {
    return FieldError(source, field, absl::StrCat("expected a duration such as \"10s\", got ",
                                                  Describe(field.value)));
  }
  absl::StatusOr<absl::Duration> d = ParseManifestDuration(field.value.Scalar());
  if (!d.ok()) return FieldError(source, field, d.status().message());
  if (*d <= absl::ZeroDuration()) return FieldError(source, field, "must be longer than zero");
  *out = *d;
  return absl::OkStatus();
}

absl::Status ReadChoice(absl::string_view source, const Field& field,
                        const std::vector<absl::string_view>& choices, int* out) {
  const std::string text = field.value.IsScalar() ? field.value.Scalar() : "";
  for (size_t i = 0; i < choices.size(); ++i) {
    if (field.value.IsScalar() && text == choices[i]) {
      *out = static_cast<int>(i);
      return absl::OkStatus();
    }
  }
  return FieldError(source, field, absl::StrFormat("expected one of %s, got %s",
                                                   absl::StrJoin(choices, ", "), Describe(field.value)));
}

absl::Status ReadArgv(absl::string_view source, const Field& field, std::vector<std::string>* out) {
  std::vector<std::string> argv;
  if (field.value.IsSequence()) {
    for (size_t i = 0; i < field.value.size(); ++i) {
      const Field element = field.Element(i, field.value[i]);
      std::string arg;
      COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadString(source, element, &arg));
      argv.push_back(std::move(arg));
    }
  } else if (field.value.IsScalar()) {
    absl::StatusOr<std::vector<std::string>> split = SplitCommandLine(field.value.Scalar());
    if (!split.ok()) return FieldError(source, field, split.status().message());
    argv = *std::move(split);
  } else {
    return FieldError(source, field, absl::StrCat("expected a command (a list of arguments or "
                                                  "a string), got ", Describe(field.value)));
  }
  if (argv.empty()) return FieldError(source, field, "the command is empty");
  if (argv[0].empty()) return FieldError(source, field, "the program name is empty");
  *out = std::move(argv);
  return absl::OkStatus();
}

absl::Status ReadEnv(absl::string_view source, const Field& field,
                     std::map<std::string, std::string>* out) {
  if (field.value.IsNull()) return absl::OkStatus();
  if (!field.value.IsMap()) {
    return FieldError(source, field, absl::StrCat("expected a mapping NAME: value, got ", Describe(field.value)));
  }
  std::map<std::string, std::string> env;
  for (const auto& entry : field.value) {
    const YAML::Node& key = entry.first;
    const std::string name = key.IsScalar() ? key.Scalar() : "";
    const std::string path = name.empty() ? field.path : absl::StrCat(field.path, ".", name);
    if (!IsEnvName(name)) {
      return ErrorAt(source, key.Mark(), path,
                     absl::StrCat(Describe(key), " is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"));
    }
    if (env.count(name) != 0) return ErrorAt(source, key.Mark(), path, "listed twice");
    if (IsLauncherVariable(name)) {
      return ErrorAt(source, key.Mark(), path,
                     "colossus-launch sets this variable for each worker; it cannot be overridden");
    }
    const Field value{path, entry.second, key.Mark()};
    if (value.value.IsNull()) return FieldError(source, value, "needs a value (write \"\" for an empty one)");
    std::string text;
    COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadString(source, value, &text));
    env.emplace(name, std::move(text));
  }
  *out = std::move(env);
  return absl::OkStatus();
}

bool IsLauncherVariable(absl::string_view name) {
  static constexpr absl::string_view kSet[] = {
      "RANK",        "LOCAL_RANK",  "WORLD_SIZE",          "LOCAL_WORLD_SIZE", "GROUP_RANK",
      "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES"};
  return absl::StartsWith(name, "COLOSSUS_") ||
         std::find(std::begin(kSet), std::end(kSet), name) != std::end(kSet);
}

bool IsValidName(absl::string_view name) {
  return !name.empty() && name.size() <= 64 &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'; }) &&
         !std::all_of(name.begin(), name.end(), [](char c) { return c == '.'; });
}

bool IsValidHost(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  if (absl::StrContains(host, ':')) {  // IPv6 literal
    return std::count(host.begin(), host.end(), ':') >= 2 &&
           std::all_of(host.begin(), host.end(),
                       [](char c) { return absl::ascii_isxdigit(c) || c == ':' || c == '.'; });
  }
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    if (label.empty() || label.size() > 63) return false;
    if (!std::all_of(label.begin(), label.end(),
                     [](char c) { return absl::ascii_isalnum(c) || c == '-' || c == '_'; })) {
      return false;
    }
  }
  return true;
}

absl::Status ParseHostPort(absl::string_view text, int min_port, std::string* host, int* port) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "'%s' is not host:port (%s; e.g. 10.0.0.1:29400 or [::1]:29400)", text, why));
  };
  absl::string_view h;
  absl::string_view p;
  if (absl::StartsWith(text, "[")) {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos) return bad("no closing ']'");
    h = text.substr(1, close - 1);
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("no port");
    p = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) return bad("no port");
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    if (absl::StrContains(h, ':')) return bad("an IPv6 address goes in brackets");
  }
  if (h.empty()) return bad("no host");
  if (!IsValidHost(h)) return bad(absl::StrCat("'", h, "' is not a host name or address"));
  int value = 0;
  if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(p, &value) || value < min_port || value > 65535) {
    return bad(absl::StrFormat("the port must be a number from %d to 65535", min_port));
  }
  *host = std::string(h);
  *port = value;
  return absl::OkStatus();
}

}  // namespace colossus::launcher::manifest_internal
