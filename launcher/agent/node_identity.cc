#include "colossus/launcher/node_identity.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace colossus::launcher {
namespace {

absl::StatusOr<int> ParseCount(const std::string& what, const std::string& text) {
  int n = 0;
  if (!absl::SimpleAtoi(text, &n) || n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "=", text, ": expected a positive whole number"));
  }
  return n;
}

// "0,1,3" -> indices; "4" -> 0..3; "none" or "" -> none.
absl::StatusOr<std::vector<int>> ParseGpus(const std::string& what, const std::string& text,
                                           bool count_allowed) {
  std::vector<int> gpus;
  if (text.empty() || text == "none" || text == "NoDevFiles") return gpus;
  if (count_allowed && text.find(',') == std::string::npos) {
    absl::StatusOr<int> n = ParseCount(what, text);
    if (!n.ok()) return n.status();
    for (int i = 0; i < *n; ++i) gpus.push_back(i);
    return gpus;
  }
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int index = -1;
    if (!absl::SimpleAtoi(part, &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, "=", text, ": '", part, "' is not a GPU index (a list like 0,1,2,3)"));
    }
    for (int g : gpus) {
      if (g == index) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, "=", text, ": GPU ", index, " is listed twice"));
      }
    }
    gpus.push_back(index);
  }
  return gpus;
}

}  // namespace

EnvLookupFn ProcessEnvironment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::string LocalHostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

absl::StatusOr<std::string> FirstSlurmHost(std::string_view nodelist_view) {
  const absl::string_view nodelist(nodelist_view.data(), nodelist_view.size());
  const size_t comma = nodelist.find(',');
  const size_t bracket = nodelist.find('[');
  if (bracket == absl::string_view::npos || (comma != absl::string_view::npos && comma < bracket)) {
    std::string host(nodelist.substr(0, comma));
    if (host.empty()) return absl::InvalidArgumentError("SLURM_JOB_NODELIST is empty");
    return host;
  }
  const size_t close = nodelist.find(']', bracket);
  if (close == absl::string_view::npos || bracket == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SLURM_JOB_NODELIST=", nodelist, ": malformed host range"));
  }
  absl::string_view range = nodelist.substr(bracket + 1, close - bracket - 1);
  range = range.substr(0, range.find(','));
  const absl::string_view first = range.substr(0, range.find('-'));
  if (first.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SLURM_JOB_NODELIST=", nodelist, ": malformed host range"));
  }
  // The suffix after ']' (rare: "n[1-2]-ib") belongs to every host.
  absl::string_view suffix = nodelist.substr(close + 1);
  suffix = suffix.substr(0, suffix.find(','));
  return absl::StrCat(nodelist.substr(0, bracket), first, suffix);
}

absl::StatusOr<NodeIdentity> ResolveNodeIdentity(const NodeIdentityFlags& flags,
                                                 const EnvLookupFn& env,
                                                 const std::string& hostname) {
  auto get = [&](const char* name) -> std::string { return env(name).value_or(""); };
  NodeIdentity id;
  id.from_slurm = env("SLURM_JOB_ID").has_value() || env("SLURM_PROCID").has_value();
  const std::string slurm_host = get("SLURMD_NODENAME").empty() ? hostname : get("SLURMD_NODENAME");

  // Node id.
  if (!flags.node_id.empty()) {
    id.node_id = flags.node_id;
  } else if (!get("COLOSSUS_NODE_ID").empty()) {
    id.node_id = get("COLOSSUS_NODE_ID");
  } else if (id.from_slurm) {
    id.node_id = slurm_host;
    int tasks = 0, nodes = 0;
    if (absl::SimpleAtoi(get("SLURM_NTASKS"), &tasks) &&
        absl::SimpleAtoi(get("SLURM_NNODES"), &nodes) && tasks > nodes) {
      id.node_id = absl::StrCat(slurm_host, "-", get("SLURM_LOCALID").empty() ? "0" : get("SLURM_LOCALID"));
    }
  } else {
    id.node_id = hostname;
  }

  // Address.
  if (!flags.address.empty()) {
    id.address = flags.address;
  } else if (!get("COLOSSUS_NODE_ADDRESS").empty()) {
    id.address = get("COLOSSUS_NODE_ADDRESS");
  } else {
    id.address = id.from_slurm ? slurm_host : hostname;
  }

  // GPUs.
  if (!flags.gpus.empty()) {
    auto gpus = ParseGpus("--gpus", flags.gpus, /*count_allowed=*/true);
    if (!gpus.ok()) return gpus.status();
    id.gpus = *gpus;
  } else if (!get("COLOSSUS_GPUS").empty()) {
    auto gpus = ParseGpus("COLOSSUS_GPUS", get("COLOSSUS_GPUS"), /*count_allowed=*/true);
    if (!gpus.ok()) return gpus.status();
    id.gpus = *gpus;
  } else if (id.from_slurm && !get("CUDA_VISIBLE_DEVICES").empty()) {
    auto gpus = ParseGpus("CUDA_VISIBLE_DEVICES", get("CUDA_VISIBLE_DEVICES"), /*count_allowed=*/false);
    if (!gpus.ok()) return gpus.status();
    id.gpus = *gpus;
  }

  // Workers.
  if (flags.workers > 0) {
    id.workers = flags.workers;
  } else if (!get("COLOSSUS_WORKERS").empty()) {
    auto n = ParseCount("COLOSSUS_WORKERS", get("COLOSSUS_WORKERS"));
    if (!n.ok()) return n.status();
    id.workers = *n;
  } else if (id.from_slurm && !get("SLURM_GPUS_ON_NODE").empty() && id.gpus.empty()) {
    auto n = ParseCount("SLURM_GPUS_ON_NODE", get("SLURM_GPUS_ON_NODE"));
    if (!n.ok()) return n.status();
    id.workers = *n;
    for (int i = 0; i < *n; ++i) id.gpus.push_back(i);
  } else {
    id.workers = id.gpus.empty() ? 1 : static_cast<int>(id.gpus.size());
  }
  if (!id.gpus.empty() && static_cast<size_t>(id.workers) != id.gpus.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node ", id.node_id, ": ", id.workers, " workers but ", id.gpus.size(),
        " GPUs; a GPU node runs one worker per GPU"));
  }

  // Coordinator.
  id.coordinator = !flags.coordinator.empty() ? flags.coordinator : get("COLOSSUS_COORDINATOR");
  if (id.coordinator.empty()) {
    return absl::InvalidArgumentError(
        "no coordinator: give --coordinator HOST:PORT or set COLOSSUS_COORDINATOR");
  }
  if (id.coordinator.front() == ':') {
    if (get("SLURM_JOB_NODELIST").empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "coordinator '", id.coordinator, "' has no host and SLURM_JOB_NODELIST is not set"));
    }
    auto host = FirstSlurmHost(get("SLURM_JOB_NODELIST"));
    if (!host.ok()) return host.status();
    id.coordinator = *host + id.coordinator;
  }
  if (id.coordinator.rfind(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("coordinator '", id.coordinator, "' is not HOST:PORT"));
  }
  return id;
}

}  // namespace colossus::launcher
