// DataLoader: shards -> windows -> deterministic samples.
#include <glob.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "colossus/check.h"
#include "colossus/data.h"

namespace colossus {
namespace {

// Owns a glob_t; globfree on destruction.
class GlobResult {
 public:
  GlobResult() = default;
  GlobResult(const GlobResult&) = delete;
  GlobResult& operator=(const GlobResult&) = delete;
  ~GlobResult() { globfree(&g_); }
  glob_t* get() { return &g_; }

 private:
  glob_t g_ = {};
};

absl::StatusOr<std::vector<std::string>> ExpandPattern(const std::string& pattern) {
  GlobResult g;
  // GLOB_ERR: an unreadable directory is an error, not silently fewer shards.
  int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, g.get());
  if (rc == GLOB_NOMATCH) {
    return absl::NotFoundError(absl::StrCat("no file matches '", pattern, "'"));
  }
  if (rc != 0) {
    return absl::InternalError(absl::StrCat(
        "glob('", pattern, "') failed: ", rc == GLOB_NOSPACE ? "out of memory" : "read error"));
  }
  std::vector<std::string> paths(g.get()->gl_pathv, g.get()->gl_pathv + g.get()->gl_pathc);
  // glob sorts by the locale's collation; byte order makes the shard order (and so the
  // sample stream) the same on every machine whatever its LANG.
  std::sort(paths.begin(), paths.end());
  return paths;
}

int64_t WindowsIn(int64_t tokens, int T) { return tokens >= T + 1 ? (tokens - 1) / T : 0; }

}  // namespace

absl::StatusOr<std::unique_ptr<DataLoader>> DataLoader::Open(
    std::vector<std::string> paths_or_globs, int vocab_size, int T, uint64_t seed,
    bool shuffle) {
  if (T < 1) return absl::InvalidArgumentError(absl::StrCat("sequence length T = ", T, " < 1"));
  if (paths_or_globs.empty()) {
    return absl::InvalidArgumentError("no data files given (empty list of paths or globs)");
  }
  std::unique_ptr<DataLoader> loader(new DataLoader());
  loader->T_ = T;
  loader->seed_ = seed;
  loader->shuffle_ = shuffle;
  loader->window_begin_.push_back(0);
  for (const std::string& pattern : paths_or_globs) {
    absl::StatusOr<std::vector<std::string>> paths = ExpandPattern(pattern);
    if (!paths.ok()) return paths.status();
    for (const std::string& path : *paths) {
      absl::StatusOr<TokenShard> shard = TokenShard::Open(path, vocab_size);
      if (!shard.ok()) return shard.status();
      loader->num_tokens_ += shard->size();
      loader->window_begin_.push_back(loader->window_begin_.back() +
                                      WindowsIn(shard->size(), T));
      loader->shards_.push_back(*std::move(shard));
    }
  }
  loader->num_windows_ = loader->window_begin_.back();
  if (loader->num_windows_ == 0) {
    std::vector<std::string> listed;
    for (const TokenShard& s : loader->shards_) {
      listed.push_back(absl::StrCat(s.path(), " (", s.size(), " tokens)"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "no window of T + 1 = ", int64_t{T} + 1, " tokens in the dataset: ",
        absl::StrJoin(listed, ", ")));
  }
  return loader;
}

DataLoader::WindowRef DataLoader::Locate(int64_t g) const {
  CHECK(g >= 0) << "negative sample index " << g;
  const int64_t epoch = g / num_windows_;
  const int64_t p = g % num_windows_;
  WindowRef ref;
  ref.window = shuffle_ ? PermuteWindow(seed_, epoch, p, num_windows_) : p;
  // The last shard whose first window is <= ref.window; shards with no window have
  // window_begin_[i] == window_begin_[i + 1] and upper_bound steps past them.
  auto it = std::upper_bound(window_begin_.begin(), window_begin_.end(), ref.window);
  ref.shard = static_cast<int>(it - window_begin_.begin()) - 1;
  ref.offset = (ref.window - window_begin_[ref.shard]) * T_;
  CHECK(ref.offset + T_ + 1 <= shards_[ref.shard].size())
      << "window " << ref.window << " past the end of " << shards_[ref.shard].path();
  return ref;
}

void DataLoader::Sample(int64_t g, int32_t* inputs, int32_t* targets) const {
  const WindowRef ref = Locate(g);
  const uint16_t* w = shards_[ref.shard].tokens() + ref.offset;
  for (int t = 0; t < T_; ++t) {
    inputs[t] = w[t];
    targets[t] = w[t + 1];
  }
}

void DataLoader::Batch(int64_t first_g, int B, int32_t* inputs, int32_t* targets) const {
  CHECK(first_g >= 0 && B >= 0) << "Batch(" << first_g << ", " << B << ")";
  for (int b = 0; b < B; ++b) {
    const int64_t row = int64_t{b} * T_;
    Sample(first_g + b, inputs + row, targets + row);
  }
}

}  // namespace colossus
