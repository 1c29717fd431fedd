// The --dry-run summary and the names of the manifest's enums.
#include <algorithm>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "colossus/launcher/manifest.h"

namespace colossus::launcher {
namespace {

constexpr size_t kNodesShown = 8;  // then "... N more"; a 12,500-node list helps no one

std::string Plural(int64_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

std::string Ranks(const NodeSpec& node) {
  if (node.workers == 1) return absl::StrCat("rank ", node.first_rank);
  return absl::StrCat("ranks ", node.first_rank, "-", node.first_rank + node.workers - 1);
}

// "0-7" for a contiguous run, "0,2,5" otherwise.
std::string GpuList(const std::vector<int>& gpus) {
  bool contiguous = true;
  for (size_t i = 1; i < gpus.size(); ++i) contiguous = contiguous && gpus[i] == gpus[i - 1] + 1;
  if (contiguous && gpus.size() > 2) return absl::StrCat(gpus.front(), "-", gpus.back());
  return absl::StrJoin(gpus, ",");
}

std::string NodeLine(const NodeSpec& node) {
  std::string where = node.host;
  if (node.address != node.host) absl::StrAppend(&where, ", address ", node.address);
  absl::StrAppend(&where, node.remote ? ", over ssh" : ", local");
  const std::string what = node.gpus.empty()
                               ? Plural(node.workers, "CPU worker", "CPU workers")
                               : absl::StrCat("GPUs ", GpuList(node.gpus));
  return absl::StrFormat("  %-4d %s (%s): %s, %s\n", node.node_rank, node.name, where, Ranks(node), what);
}

}  // namespace

std::string HostPort::ToString() const {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

std::string_view LogModeName(LogMode mode) {
  switch (mode) {
    case LogMode::kAll: return "all";
    case LogMode::kRank0: return "rank0";
    case LogMode::kNone: return "none";
  }
  return "?";
}

std::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kNccl: return "nccl";
    case Backend::kGloo: return "gloo";
  }
  return "?";
}

std::string DescribeManifest(const Manifest& m) {
  std::string out;
  const ParallelismSpec& p = m.parallelism;
  absl::StrAppendFormat(&out, "job %s: %s, %s, world size %d = tensor %d x data %d, backend %s\n",
                        m.name, Plural(static_cast<int64_t>(m.nodes.size()), "node", "nodes"),
                        m.num_gpus > 0 ? Plural(m.num_gpus, "GPU", "GPUs") : "CPU only",
                        m.world_size, p.tensor_parallel, p.data_parallel, std::string(BackendName(p.backend)));
  const CoordinatorSpec& c = m.coordinator;
  if (c.start_here) {
    HostPort dial{c.advertise, c.listen.port};
    absl::StrAppendFormat(&out, "coordinator: started here, listening on %s, agents dial %s%s\n",
                          c.listen.port == 0 ? absl::StrCat(c.listen.host, ":<free port>") : c.listen.ToString(),
                          c.listen.port == 0 ? absl::StrCat(c.advertise, ":<that port>") : dial.ToString(),
                          c.tls.enabled ? ", TLS" : "");
  } else {
    absl::StrAppendFormat(&out, "coordinator: running at %s%s\n", c.address.ToString(),
                          c.tls.enabled ? ", TLS" : "");
  }
  absl::StrAppend(&out, "nodes:\n");
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    // The first nodes and the last one: enough to see the pattern and the end.
    if (m.nodes.size() > kNodesShown + 1 && i == kNodesShown - 1) {
      absl::StrAppendFormat(&out, "  ... %d more\n", m.nodes.size() - kNodesShown);
      i = m.nodes.size() - 2;
      continue;
    }
    absl::StrAppend(&out, NodeLine(m.nodes[i]));
  }
  absl::StrAppendFormat(&out, "worker: %s (in %s; output: %s)\n", absl::StrJoin(m.worker.command, " "),
                        m.worker.cwd, std::string(LogModeName(m.worker.log)));
  absl::StrAppendFormat(&out, "run dir: %s; checkpoints %s, keep %d\n", m.run_dir,
                        m.checkpoint.interval_steps > 0
                            ? absl::StrCat("every ", m.checkpoint.interval_steps, " steps in ", m.checkpoint.dir)
                            : absl::StrCat("on request only, in ", m.checkpoint.dir),
                        m.checkpoint.keep);
  const ElasticSpec& e = m.restart.elastic;
  absl::StrAppendFormat(&out, "restarts: up to %d, backoff %s, %s\n", m.restart.max_restarts,
                        absl::FormatDuration(m.restart.backoff),
                        e.enabled ? absl::StrFormat("elastic %d-%d nodes (settle %s)", e.min_nodes,
                                                    e.max_nodes, absl::FormatDuration(e.settle))
                                  : "not elastic (every node, every time)");
  absl::StrAppendFormat(&out, "health: heartbeat %s, node timeout %s, hang timeout %s, join timeout %s\n",
                        absl::FormatDuration(m.health.heartbeat_interval),
                        absl::FormatDuration(m.health.node_timeout),
                        absl::FormatDuration(m.health.hang_timeout),
                        absl::FormatDuration(m.health.join_timeout));
  absl::StrAppendFormat(&out, "auth: %s\n",
                        m.auth.generate ? "a token generated for this job"
                        : m.auth.token_file.empty() ? "the token written in the manifest"
                                                    : absl::StrCat("token from ", m.auth.token_file));
  return out;
}

}  // namespace colossus::launcher
