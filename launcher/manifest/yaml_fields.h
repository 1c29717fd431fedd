// Reading YAML fields with positions: every read either fills its output or returns one
// InvalidArgument "<file>:<line>:<col>: <path>: <rule>". Nothing here throws; yaml-cpp's
// own conversions (which throw) are never called, scalars are parsed from their text.
//
// Internal to colossus_manifest.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "yaml-cpp/yaml.h"

#define COLOSSUS_MANIFEST_RETURN_IF_ERROR(expr) \
  do {                                          \
    absl::Status _status = (expr);              \
    if (!_status.ok()) return _status;          \
  } while (0)

namespace colossus::launcher::manifest_internal {

// One field of the document: where it is and what it holds.
struct Field {
  std::string path;     // "nodes[2].gpus"; empty for the document itself
  YAML::Node value;     // may be Null (`key:` with nothing after it)
  YAML::Mark key_mark;  // the key's position; the element's own for list elements
  // Where an error about the value points: the value, or the key when the value is
  // empty (yaml-cpp marks an empty value at the start of the next line).
  YAML::Mark mark() const;
  Field Element(size_t index, const YAML::Node& element) const;  // "path[index]"
};

// "<source>:<line>:<col>" (1-based), or just "<source>" for a null mark.
std::string Position(absl::string_view source, const YAML::Mark& mark);
absl::Status ErrorAt(absl::string_view source, const YAML::Mark& mark, absl::string_view path,
                     absl::string_view rule);
inline absl::Status FieldError(absl::string_view source, const Field& field,
                               absl::string_view rule) {
  return ErrorAt(source, field.mark(), field.path, rule);
}

// What a node is, for messages: "a list", "a mapping", "nothing", "'abc'".
std::string Describe(const YAML::Node& node);

// The closest of `candidates` to `name` when it is a plausible typo (edit distance <= 2,
// and less than half the name), else empty.
std::string NearMiss(absl::string_view name, const std::vector<absl::string_view>& candidates);

struct FieldRule {
  absl::string_view name;
  std::function<absl::Status(const Field&)> read;
};
// Reads the mapping `map` (an empty value reads as an empty mapping) entry by entry in
// document order: a key listed twice, a key that is not a plain string and a key with no
// rule are errors (the last with "did you mean" for a near miss, or what `hint` says
// about it: e.g. that it belongs in another section).
absl::Status ReadFields(absl::string_view source, const Field& map,
                        const std::vector<FieldRule>& rules,
                        const std::function<std::string(absl::string_view)>& hint = nullptr);

// Typed reads. Strings accept any scalar (a plain 8 reads as "8"); numbers and booleans
// must be plain (a quoted "8" is a string, refused where a count is expected).
absl::Status ReadString(absl::string_view source, const Field& field, std::string* out);
absl::Status ReadNonEmptyString(absl::string_view source, const Field& field, std::string* out);
absl::Status ReadInt(absl::string_view source, const Field& field, int64_t min, int64_t max,
                     int64_t* out);
absl::Status ReadInt(absl::string_view source, const Field& field, int min, int max, int* out);
absl::Status ReadBool(absl::string_view source, const Field& field, bool* out);
// A positive duration ("500ms", "10s", "2m").
absl::Status ReadDuration(absl::string_view source, const Field& field, absl::Duration* out);
// One of `choices`; *out is its index.
absl::Status ReadChoice(absl::string_view source, const Field& field,
                        const std::vector<absl::string_view>& choices, int* out);
// An argv: a list of strings, or one string split like a shell (SplitCommandLine).
absl::Status ReadArgv(absl::string_view source, const Field& field, std::vector<std::string>* out);
// A mapping NAME: value of environment variables. Names are [A-Za-z_][A-Za-z0-9_]*; the
// variables colossus-launch sets for each worker are refused (they would be overwritten).
absl::Status ReadEnv(absl::string_view source, const Field& field,
                     std::map<std::string, std::string>* out);

// Names of the variables colossus-launch sets itself (and the COLOSSUS_ prefix).
bool IsLauncherVariable(absl::string_view name);

// Job and node names end up in file names and log prefixes: letters, digits, '.', '_'
// and '-', at most 64, and not only dots.
bool IsValidName(absl::string_view name);

// A hostname (labels of [A-Za-z0-9_-] joined by dots), an IPv4 or an IPv6 literal
// (without brackets).
bool IsValidHost(absl::string_view host);
// Parses "host:port" (IPv6 in brackets); port within [min_port, 65535]. The error says
// what is wrong, without position.
absl::Status ParseHostPort(absl::string_view text, int min_port, std::string* host, int* port);

}  // namespace colossus::launcher::manifest_internal
