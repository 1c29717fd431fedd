// The two small languages inside manifest values: durations and command lines.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "colossus/launcher/manifest.h"

namespace colossus::launcher {

absl::StatusOr<absl::Duration> ParseManifestDuration(std::string_view text_in) {
  const absl::string_view text(text_in.data(), text_in.size());
  const absl::string_view s = absl::StripAsciiWhitespace(text);
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "'%s' is not a duration (%s; e.g. \"500ms\", \"10s\", \"2m\", \"1h\")", text, why));
  };
  if (s.empty()) return bad("it is empty");
  if (s[0] == '-') return bad("it is negative");
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  while (i < s.size()) {
    // <whole>[.<fraction>]<unit>, repeated: "1m30s".
    const size_t start = i;
    int64_t whole = 0;
    while (i < s.size() && absl::ascii_isdigit(s[i])) {
      // Twelve digits of hours is already far past any timeout; refuse before overflow.
      if (i - start >= 12) return bad("the number is too large");
      whole = whole * 10 + (s[i++] - '0');
    }
    int64_t fraction = 0;
    int64_t scale = 1;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && absl::ascii_isdigit(s[i])) {
        if (scale < 1'000'000'000) {  // nanoseconds are the resolution that matters
          fraction = fraction * 10 + (s[i] - '0');
          scale *= 10;
        }
        ++i;
      }
      if (scale == 1 && i - start == 1) return bad("a number must come before the unit");
    }
    if (i == start) return bad("a number must come before the unit");
    const size_t unit_start = i;
    while (i < s.size() && absl::ascii_isalpha(s[i])) ++i;
    const absl::string_view unit = s.substr(unit_start, i - unit_start);
    absl::Duration one;
    if (unit == "ms") {
      one = absl::Milliseconds(1);
    } else if (unit == "s") {
      one = absl::Seconds(1);
    } else if (unit == "m") {
      one = absl::Minutes(1);
    } else if (unit == "h") {
      one = absl::Hours(1);
    } else if (unit.empty()) {
      return bad("a unit is required: ms, s, m or h");
    } else {
      return bad(absl::StrFormat("unknown unit '%s'; use ms, s, m or h", unit));
    }
    total += one * whole + one * fraction / scale;
  }
  return total;
}

absl::StatusOr<std::vector<std::string>> SplitCommandLine(std::string_view text_in) {
  const absl::string_view text(text_in.data(), text_in.size());
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;  // distinguishes an empty quoted word ('') from no word
  size_t i = 0;
  // Positions count from 1, as an editor's columns do.
  const auto bad = [](absl::string_view why) { return absl::InvalidArgumentError(why); };
  while (i < text.size()) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      ++i;
    } else if (c == '\'') {
      const size_t close = text.find('\'', i + 1);
      if (close == absl::string_view::npos) return bad(absl::StrFormat("the ' at character %d is never closed", i + 1));
      const absl::string_view quoted = text.substr(i + 1, close - i - 1);
      word.append(quoted.data(), quoted.size());
      in_word = true;
      i = close + 1;
    } else if (c == '"') {
      size_t j = i + 1;
      for (;; ++j) {
        if (j >= text.size()) return bad(absl::StrFormat("the \" at character %d is never closed", i + 1));
        if (text[j] == '"') break;
        // Inside double quotes a backslash quotes only these, as in sh.
        if (text[j] == '\\' && j + 1 < text.size() &&
            (text[j + 1] == '"' || text[j + 1] == '\\' || text[j + 1] == '$' || text[j + 1] == '`')) {
          ++j;
        }
        word.push_back(text[j]);
      }
      in_word = true;
      i = j + 1;
    } else if (c == '\\') {
      if (i + 1 >= text.size()) return bad(absl::StrFormat("a backslash ends the command (character %d)", i + 1));
      word.push_back(text[i + 1]);
      in_word = true;
      i += 2;
    } else if (c == '|' || c == ';' || c == '&' || c == '<' || c == '>' || c == '`') {
      return bad(absl::StrFormat(
          "'%c' (character %d) is shell syntax, but the command is not run by a shell; quote "
          "it, or write [\"sh\", \"-c\", \"...\"]", c, i + 1));
    } else {
      word.push_back(c);
      in_word = true;
      ++i;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

}  // namespace colossus::launcher
