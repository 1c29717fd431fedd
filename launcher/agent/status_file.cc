#include "colossus/launcher/status_file.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace colossus::launcher {

std::string RankStatusPath(const std::string& run_dir, int64_t generation, int rank) {
  return absl::StrCat(run_dir, "/status/gen", generation, "/rank", rank, ".json");
}

std::optional<RankStatusReport> ReadRankStatus(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  RankStatusReport r;
  auto number = [&](const char* key, auto* out) {
    auto it = j.find(key);
    if (it != j.end() && it->is_number()) *out = it->get<std::remove_pointer_t<decltype(out)>>();
  };
  number("step", &r.step);
  number("total_steps", &r.total_steps);
  number("loss", &r.loss);
  number("tokens_per_s", &r.tokens_per_s);
  number("collective_seq", &r.collective_seq);
  if (auto it = j.find("collective"); it != j.end() && it->is_string()) {
    r.collective = it->get<std::string>();
  }
  return r;
}

absl::Status WriteRankStatus(const std::string& path, const RankStatusReport& report) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create the directory of ", path, ": ", ec.message()));
  nlohmann::json j = {{"step", report.step},
                      {"total_steps", report.total_steps},
                      {"loss", report.loss},
                      {"tokens_per_s", report.tokens_per_s},
                      {"collective_seq", report.collective_seq},
                      {"collective", report.collective}};
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace colossus::launcher
