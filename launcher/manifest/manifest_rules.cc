// Rules that join several fields, defaults that depend on other sections, the derived
// layout, and the parse's entry point.
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "files.h"
#include "manifest_parser.h"

namespace colossus::launcher {
namespace manifest_internal {
namespace {

bool IsLoopback(absl::string_view host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}
bool IsWildcard(absl::string_view host) { return host == "0.0.0.0" || host == "::"; }

std::string NodeLabel(const NodeSpec& node) {
  return absl::StrFormat("nodes[%d] (%s)", node.node_rank, node.name);
}

// Where a YAML text's content starts, and where a second document would begin: a line
// that starts with "---" or "..." at column 0 after some content, followed by more content.
// (Block scalars are indented at the top level, so such a line is always a marker.)
struct TextShape {
  YAML::Mark first_content = YAML::Mark::null_mark();
  YAML::Mark second_document = YAML::Mark::null_mark();
};

TextShape ShapeOf(absl::string_view text) {
  TextShape shape;
  YAML::Mark marker = YAML::Mark::null_mark();  // a marker seen after content
  int line = 0;
  for (size_t pos = 0; pos < text.size(); ++line) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    const absl::string_view l = text.substr(pos, end - pos);
    pos = end + 1;
    const size_t first = l.find_first_not_of(" \t\r");
    if (first == absl::string_view::npos || l[first] == '#') continue;
    const bool is_marker = (absl::StartsWith(l, "---") || absl::StartsWith(l, "...")) &&
                           (l.size() == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r');
    const auto at = [line](size_t column) {
      YAML::Mark mark;
      mark.line = line;
      mark.column = static_cast<int>(column);
      return mark;
    };
    if (is_marker) {
      if (shape.first_content.line >= 0 && marker.line < 0) marker = at(0);
      // "--- {job: ...}": the document may start on the marker's line.
      const size_t rest = l.find_first_not_of(" \t\r", 3);
      if (rest == absl::string_view::npos || l[rest] == '#') continue;
      if (marker.line >= 0) {
        shape.second_document = marker;
        return shape;
      }
      if (shape.first_content.line < 0) shape.first_content = at(rest);
      continue;
    }
    if (marker.line >= 0) {
      shape.second_document = marker;
      return shape;
    }
    if (shape.first_content.line < 0) shape.first_content = at(first);
  }
  return shape;
}

std::string ThisHostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

absl::Status ManifestParser::CheckNode(const Field& element, NodeSpec* node) {
  const std::string& p = element.path;
  const Field* host = Seen(p + ".host");
  const Field* address = Seen(p + ".address");
  const Field* name = Seen(p + ".name");
  const Field* gpus = Seen(p + ".gpus");
  const Field* workers = Seen(p + ".workers");
  if (host == nullptr) {
    return ErrorAt(source_, element.mark(), p + ".host",
                   "is required (the machine this node's agent runs on)");
  }
  // How many workers: one per GPU, or `workers` CPU processes.
  if (gpus == nullptr && workers == nullptr) {
    return ErrorAt(source_, element.mark(), p + ".gpus",
                   "is required: a GPU count, a list of GPU indices, or 0 with workers: N "
                   "for CPU workers");
  }
  const int num_gpus = static_cast<int>(node->gpus.size());
  if (num_gpus > 0) {
    if (workers != nullptr && node->workers != num_gpus) {
      return Error(*workers, absl::StrFormat(
          "%d workers on %d GPUs; a GPU node runs one worker per GPU (leave workers out)",
          node->workers, num_gpus));
    }
    node->workers = num_gpus;
  } else if (workers == nullptr) {
    node->workers = 1;
  }
  if (!m_.nodes.empty() && (num_gpus > 0) != !m_.nodes[0].gpus.empty()) {
    const Field& at = gpus != nullptr ? *gpus : *workers;
    return Error(at, absl::StrFormat(
        "%s but %s %s; every node of a job has GPUs, or none does",
        num_gpus > 0 ? "has GPUs" : "has no GPUs", NodeLabel(m_.nodes[0]),
        num_gpus > 0 ? "has none" : "has GPUs"));
  }

  // A host that cannot be a name (an IPv6 literal, a name past 64 characters) gives a
  // positional one.
  if (name == nullptr) node->name = IsValidName(node->host) ? node->host : absl::StrCat("node", node->node_rank);
  if (address == nullptr) node->address = node->host;
  if (Seen(p + ".remote") == nullptr) {
    node->remote = !IsLocal(node->host);
  }

  // Against the nodes before it.
  const int index = node->node_rank;
  if (auto it = node_by_address_.find(node->address); it != node_by_address_.end()) {
    const NodeSpec& other = m_.nodes[it->second];
    const bool both_default = address == nullptr && Seen(absl::StrFormat("nodes[%d].address", it->second)) == nullptr;
    if (both_default) {
      return Error(*host, absl::StrFormat(
          "'%s' is already the host of nodes[%d] (line %d); to run two agents on one machine, "
          "give each its own address", node->host, other.node_rank, node_line_[it->second]));
    }
    return Error(address != nullptr ? *address : *host,
                 absl::StrFormat("'%s' is already the address of nodes[%d] (line %d)",
                                 node->address, other.node_rank, node_line_[it->second]));
  }
  for (int other : nodes_by_host_[node->host]) {
    for (int g : node->gpus) {
      const std::vector<int>& theirs = m_.nodes[other].gpus;
      if (std::find(theirs.begin(), theirs.end(), g) != theirs.end()) {
        return Error(*gpus, absl::StrFormat(
            "GPU %d of host '%s' is already nodes[%d]'s (line %d); nodes on one host need "
            "disjoint GPUs", g, node->host, other, node_line_[other]));
      }
    }
  }
  if (auto it = node_by_name_.find(node->name); it != node_by_name_.end()) {
    if (name == nullptr) {
      return Error(*host, absl::StrFormat(
          "the name '%s' (taken from the host) is already nodes[%d]'s (line %d); give each node "
          "on this host a name", node->name, it->second, node_line_[it->second]));
    }
    return Error(*name, absl::StrFormat("the name '%s' is already nodes[%d]'s (line %d); node names are unique",
                                        node->name, it->second, node_line_[it->second]));
  }
  node_by_address_.emplace(node->address, index);
  node_by_name_.emplace(node->name, index);
  nodes_by_host_[node->host].push_back(index);
  node_line_.push_back(element.mark().line + 1);
  return absl::OkStatus();
}

absl::Status ManifestParser::CheckCoordinatorSection(const Field& section) {
  const CoordinatorSpec& c = m_.coordinator;
  const std::string here = "only for a coordinator started here (this one is reached at coordinator.address)";
  if (!c.start_here) {
    if (Seen("coordinator.start") != nullptr) {
      return Error(*Seen("coordinator.address"),
                   "given together with start: here; a coordinator is either started here or "
                   "reached at an address");
    }
    for (const char* field : {"coordinator.listen", "coordinator.advertise", "coordinator.tls.cert",
                              "coordinator.tls.key", "coordinator.tls.client_ca"}) {
      if (const Field* f = Seen(field)) return Error(*f, here);
    }
  }
  const TlsSpec& t = c.tls;
  if (!t.enabled) return absl::OkStatus();
  const Field& tls = *Seen("coordinator.tls");
  const auto pair = [&](const std::string& a, const std::string& b) -> absl::Status {
    const Field* fa = Seen("coordinator.tls." + a);
    const Field* fb = Seen("coordinator.tls." + b);
    if ((fa == nullptr) != (fb == nullptr)) {
      return Error(fa != nullptr ? *fa : *fb,
                   absl::StrFormat("needs coordinator.tls.%s too", fa != nullptr ? b : a));
    }
    return absl::OkStatus();
  };
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(pair("cert", "key"));
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(pair("client_cert", "client_key"));
  if (c.start_here) {
    if (t.cert.empty()) {
      return Error(tls, "a coordinator started here needs cert and key (its certificate and private key)");
    }
    if (!t.client_ca.empty() && t.client_cert.empty()) {
      return Error(*Seen("coordinator.tls.client_ca"),
                   "needs client_cert and client_key: the agents and the launcher must present "
                   "a certificate the coordinator accepts");
    }
  } else if (t.ca.empty()) {
    return Error(tls, "needs ca (the CA that signed the running coordinator's certificate)");
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::FinishCoordinator() {
  CoordinatorSpec& c = m_.coordinator;
  if (c.tls.enabled && c.tls.ca.empty()) c.tls.ca = c.tls.cert;  // self-signed: the cert is its CA
  if (!c.start_here) return absl::OkStatus();
  auto remote = std::find_if(m_.nodes.begin(), m_.nodes.end(), [](const NodeSpec& n) { return n.remote; });
  if (Seen("coordinator.listen") == nullptr) {
    // Nothing remote: keep the port off the network.
    c.listen.host = m_.any_remote ? "0.0.0.0" : "127.0.0.1";
    c.listen.port = 0;
  } else if (IsLoopback(c.listen.host) && m_.any_remote) {
    return Error(*Seen("coordinator.listen"),
                 absl::StrFormat("%s is reachable from this machine only, but %s is remote",
                                 c.listen.host, NodeLabel(*remote)));
  }
  if (Seen("coordinator.advertise") == nullptr) {
    if (!IsWildcard(c.listen.host)) {
      c.advertise = c.listen.host;
    } else if (!m_.any_remote) {
      c.advertise = "127.0.0.1";
    } else {
      c.advertise = options_.local_hostname.empty() ? ThisHostname() : options_.local_hostname;
    }
  } else if (IsLoopback(c.advertise) && m_.any_remote) {
    return Error(*Seen("coordinator.advertise"),
                 absl::StrFormat("%s is reachable from this machine only, but %s is remote",
                                 c.advertise, NodeLabel(*remote)));
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::CheckParallelism() {
  ParallelismSpec& p = m_.parallelism;
  const int tp = p.tensor_parallel;
  for (const NodeSpec& node : m_.nodes) {
    if (node.workers % tp == 0) continue;
    // Ranks are contiguous per node and a tensor-parallel group is tp consecutive ranks,
    // so tp dividing every node's count keeps each group inside one node, where its
    // per-layer all-reduces ride NVLink instead of the network.
    return ErrorAtPath("parallelism.tensor_parallel", absl::StrFormat(
        "%d %s the %d workers of %s; a tensor-parallel group must lie within one node", tp,
        tp > node.workers ? "is more than" : "does not divide", node.workers, NodeLabel(node)));
  }
  p.data_parallel = m_.world_size / tp;
  if (p.backend == Backend::kNccl && m_.num_gpus == 0) {
    return ErrorAtPath("parallelism.backend", "nccl needs GPUs and no node has any (use gloo, or auto)");
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::CheckElastic() {
  ElasticSpec& e = m_.restart.elastic;
  const int n = static_cast<int>(m_.nodes.size());
  if (!e.enabled) {
    e.min_nodes = e.max_nodes = n;
    return absl::OkStatus();
  }
  const Field* min = Seen("restart.elastic.min_nodes");
  const Field* max = Seen("restart.elastic.max_nodes");
  if (min == nullptr) e.min_nodes = 1;
  if (max == nullptr) e.max_nodes = n;
  if (e.max_nodes > n) {
    return Error(*max, absl::StrFormat("%d is more than the %d node%s listed", e.max_nodes, n, n == 1 ? "" : "s"));
  }
  if (e.min_nodes > e.max_nodes) {
    return Error(*min, max != nullptr
                           ? absl::StrFormat("%d is more than max_nodes (%d)", e.min_nodes, e.max_nodes)
                           : absl::StrFormat("%d is more than the %d node%s listed", e.min_nodes, n, n == 1 ? "" : "s"));
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::CheckHealth() {
  const HealthSpec& h = m_.health;
  // Beats are judged against the timeouts: with less than two intervals, one beat that
  // arrives a little late declares a healthy node dead.
  for (const auto& [name, value] : {std::pair<std::string, absl::Duration>{"node_timeout", h.node_timeout},
                                    {"hang_timeout", h.hang_timeout}}) {
    if (value >= 2 * h.heartbeat_interval) continue;
    const std::string rule = absl::StrFormat(
        "%s (%s) must be at least twice heartbeat_interval (%s), or one late beat trips it",
        name, absl::FormatDuration(value), absl::FormatDuration(h.heartbeat_interval));
    if (Seen("health." + name) != nullptr) return ErrorAtPath("health." + name, rule);
    return ErrorAtPath("health.heartbeat_interval", rule);
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::Finish() {
  if (Seen("job") == nullptr) {
    return ErrorAt(source_, YAML::Mark::null_mark(), "job", "a required section (job: {name: ...})");
  }
  if (m_.nodes.empty()) {
    return ErrorAt(source_, YAML::Mark::null_mark(), "nodes",
                   "required: a list of nodes, or hostfile: PATH");
  }
  if (Seen("worker") == nullptr) {
    return ErrorAt(source_, YAML::Mark::null_mark(), "worker.command",
                   "is required (the program and arguments of each worker)");
  }
  // The layout of the full node set, in manifest order.
  for (NodeSpec& node : m_.nodes) {
    node.first_rank = m_.world_size;
    m_.world_size += node.workers;
    m_.num_gpus += static_cast<int64_t>(node.gpus.size());
    m_.any_remote = m_.any_remote || node.remote;
  }
  // Defaults the file did not write resolve against the working directory of the launch.
  if (m_.run_dir.empty()) m_.run_dir = ResolvePath(working_dir_, absl::StrCat("runs/", m_.name));
  if (m_.checkpoint.dir.empty()) m_.checkpoint.dir = ResolvePath(m_.run_dir, "checkpoints");
  if (m_.worker.cwd.empty()) m_.worker.cwd = working_dir_;

  COLOSSUS_MANIFEST_RETURN_IF_ERROR(FinishCoordinator());
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(CheckParallelism());
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(CheckElastic());
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(CheckHealth());
  if (m_.auth.token.empty()) {
    if (!m_.coordinator.start_here) {
      return ErrorAtPath("coordinator.address",
                         "a running coordinator needs its token: set auth.token_file (or auth.token)");
    }
    m_.auth.generate = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<Manifest> ManifestParser::Parse(absl::string_view yaml) {
  // One document, read with YAML::Load: yaml-cpp 0.7's LoadAll loops forever, allocating,
  // on a stray ',' outside brackets (jbeder/yaml-cpp#1040, fixed upstream in 2024), while
  // Load reads a single document and stops. A second document is found by its marker.
  const TextShape shape = ShapeOf(yaml);
  if (shape.second_document.line >= 0) {
    return ErrorAt(source_, shape.second_document, "",
                   "a second YAML document starts here; a manifest is one document");
  }
  YAML::Node document;
  try {
    document = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return ErrorAt(source_, e.mark, "", absl::StrCat("malformed YAML: ", e.msg));
  }
  // Load gives nothing (rather than an error) for some malformed starts, such as that ','.
  if (document.IsNull() && shape.first_content.line >= 0) {
    return ErrorAt(source_, shape.first_content, "",
                   "malformed YAML: expected the manifest's sections (job:, nodes:, worker:, ...)");
  }
  const Field root{"", document, YAML::Mark::null_mark()};
  try {
    COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadDocument(root));
    COLOSSUS_MANIFEST_RETURN_IF_ERROR(Finish());
  } catch (const YAML::Exception& e) {
    // Every read goes through yaml_fields.h, which does not throw; this is a bug, but
    // the user still deserves to know where.
    return absl::InternalError(absl::StrCat(Position(source_, e.mark), ": ", e.what()));
  }
  return std::move(m_);
}

}  // namespace manifest_internal

absl::StatusOr<Manifest> ParseManifest(std::string_view yaml, std::string_view source_name,
                                       const ManifestOptions& options) {
  return manifest_internal::ManifestParser(absl::string_view(source_name.data(), source_name.size()), options)
      .Parse(absl::string_view(yaml.data(), yaml.size()));
}

absl::StatusOr<Manifest> LoadManifest(const std::string& path, const ManifestOptions& options) {
  // 64 MiB is some 500,000 nodes written out in full.
  absl::StatusOr<std::string> text = manifest_internal::ReadTextFile(path, int64_t{64} << 20);
  if (!text.ok()) return text.status();
  return ParseManifest(*text, path, options);
}

}  // namespace colossus::launcher
