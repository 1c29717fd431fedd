// The DeepSpeed/MPI hostfile: `host slots=N` per line.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "colossus/launcher/manifest.h"
#include "files.h"
#include "yaml_fields.h"

namespace colossus::launcher {
namespace {

constexpr int kMaxSlots = 1024;  // as nodes[].gpus: a guard against typos
constexpr int64_t kMaxHostfileBytes = 64 << 20;

struct Word {
  absl::string_view text;
  size_t column;  // 1-based
};

std::vector<Word> SplitWords(absl::string_view line) {
  std::vector<Word> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && absl::ascii_isspace(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !absl::ascii_isspace(line[i])) ++i;
    if (i > start) words.push_back(Word{line.substr(start, i - start), start + 1});
  }
  return words;
}

}  // namespace

absl::StatusOr<std::vector<HostfileEntry>> ParseHostfile(std::string_view text_in,
                                                         std::string_view source_in) {
  const absl::string_view text(text_in.data(), text_in.size());
  const absl::string_view source_name(source_in.data(), source_in.size());
  std::vector<HostfileEntry> entries;
  std::map<std::string, int, std::less<>> first_line;  // host -> line
  int line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    absl::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    line = line.substr(0, line.find('#'));  // a comment runs to the end of the line
    const std::vector<Word> words = SplitWords(line);
    if (words.empty()) continue;
    const auto bad = [&](size_t column, absl::string_view rule) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s:%d:%d: %s", source_name, line_number, column, rule));
    };
    HostfileEntry entry;
    entry.host = std::string(words[0].text);
    entry.line = line_number;
    if (!manifest_internal::IsValidHost(entry.host)) {
      return bad(words[0].column, absl::StrFormat("'%s' is not a host name or address "
                                                  "(a line is `host slots=N`)", entry.host));
    }
    bool have_slots = false;
    for (size_t i = 1; i < words.size(); ++i) {
      const Word& w = words[i];
      if (!absl::StartsWith(w.text, "slots=")) {
        return bad(w.column, absl::StrFormat("unknown attribute '%s' (a line is `host slots=N`)", w.text));
      }
      if (have_slots) return bad(w.column, "slots is given twice");
      have_slots = true;
      const absl::string_view value = w.text.substr(6);
      int slots = 0;
      if (value.empty() || !std::all_of(value.begin(), value.end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(value, &slots) || slots < 1 || slots > kMaxSlots) {
        return bad(w.column + 6, absl::StrFormat("slots: expected a whole number from 1 to %d, got '%s'",
                                                 kMaxSlots, value));
      }
      entry.slots = slots;
    }
    if (auto it = first_line.find(entry.host); it != first_line.end()) {
      return bad(words[0].column, absl::StrFormat("host '%s' is listed twice (first on line %d)",
                                                  entry.host, it->second));
    }
    first_line.emplace(entry.host, line_number);
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: lists no hosts (one `host slots=N` per line)", source_name));
  }
  return entries;
}

absl::StatusOr<std::vector<HostfileEntry>> LoadHostfile(const std::string& path) {
  absl::StatusOr<std::string> text = manifest_internal::ReadTextFile(path, kMaxHostfileBytes);
  if (!text.ok()) return text.status();
  return ParseHostfile(*text, path);
}

}  // namespace colossus::launcher
