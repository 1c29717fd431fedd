// Reading each section of the manifest, field by field, in document order.
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "files.h"
#include "manifest_parser.h"

namespace colossus::launcher::manifest_internal {
namespace {

constexpr int kMaxGpusPerNode = 1024;  // a guard against typos ("gpus: 80000")
constexpr int kMaxWorkersPerNode = 1024;
constexpr int64_t kMaxTokenBytes = 64 << 10;
constexpr int64_t kMaxTlsFileBytes = 1 << 20;

constexpr absl::string_view kNameRule = "letters, digits, '.', '_' and '-', at most 64";

// gRPC metadata carries the token: printable ASCII, and no blanks so that a stray space
// copied into a token file cannot make two tokens that look alike.
std::string TokenProblem(absl::string_view token) {
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c <= 0x20 || c >= 0x7f) {
      return absl::StrFormat("byte %d (0x%02x) is not a printable, non-blank ASCII character; "
                             "a token travels in gRPC metadata", i, c);
    }
  }
  return "";
}

// Where a field that is not in any section's list belongs, when it belongs elsewhere.
std::string TopLevelHint(absl::string_view name) {
  static const std::map<absl::string_view, absl::string_view> kHome = {
      {"name", "job"},          {"run_dir", "job"},
      {"address", "coordinator"}, {"listen", "coordinator"},
      {"tls", "coordinator"},   {"command", "worker"},
      {"env", "worker (or a node)"}, {"cwd", "worker"},
      {"log", "worker"},        {"tensor_parallel", "parallelism"},
      {"backend", "parallelism"}, {"max_restarts", "restart"},
      {"backoff", "restart"},   {"elastic", "restart"},
      {"min_nodes", "restart.elastic"}, {"max_nodes", "restart.elastic"},
      {"heartbeat_interval", "health"}, {"node_timeout", "health"},
      {"hang_timeout", "health"}, {"join_timeout", "health"},
      {"interval_steps", "checkpoint"}, {"keep", "checkpoint"},
      {"token", "auth"},        {"token_file", "auth"},
      {"gpus", "each entry of nodes"}, {"workers", "each entry of nodes"},
      {"host", "each entry of nodes"}, {"hosts", "nodes (or hostfile)"}};
  auto it = kHome.find(name);
  return it == kHome.end() ? "" : absl::StrCat("it belongs under ", it->second);
}

}  // namespace

ManifestParser::ManifestParser(absl::string_view source, const ManifestOptions& options)
    : source_(source), options_(options) {
  working_dir_ = options.working_dir.empty() ? CurrentDirectory()
                                             : ResolvePath(CurrentDirectory(), options.working_dir);
  m_.source = std::string(source);
  m_.base_dir = options.base_dir.empty() ? AbsoluteDirectoryOf(source)
                                         : ResolvePath(CurrentDirectory(), options.base_dir);
}

bool ManifestParser::IsLocal(const std::string& host) {
  if (options_.is_local) return options_.is_local(host);
  if (this_machine_ == nullptr) this_machine_ = std::make_unique<ThisMachine>();
  return this_machine_->Is(host);
}

FieldRule ManifestParser::Rule(absl::string_view name, std::function<absl::Status(const Field&)> read) {
  return FieldRule{name, [this, read = std::move(read)](const Field& f) {
                     seen_.insert_or_assign(f.path, f);
                     return read(f);
                   }};
}

const Field* ManifestParser::Seen(const std::string& path) const {
  auto it = seen_.find(path);
  return it == seen_.end() ? nullptr : &it->second;
}

absl::Status ManifestParser::ErrorAtPath(const std::string& path, absl::string_view rule) const {
  if (const Field* f = Seen(path)) return Error(*f, rule);
  return ErrorAt(source_, YAML::Mark::null_mark(), path, rule);
}

absl::Status ManifestParser::ReadPath(const Field& f, std::string* out) {
  std::string text;
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &text));
  *out = ResolvePath(m_.base_dir, text);
  return absl::OkStatus();
}

absl::Status ManifestParser::ReadReadableFile(const Field& f, std::string* out) {
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadPath(f, out));
  absl::StatusOr<std::string> text = ReadTextFile(*out, kMaxTlsFileBytes);
  if (!text.ok()) return Error(f, text.status().message());
  if (text->empty()) return Error(f, absl::StrCat(*out, " is empty"));
  return absl::OkStatus();
}

absl::Status ManifestParser::ReadDocument(const Field& root) {
  if (root.value.IsNull()) return ErrorAt(source_, YAML::Mark::null_mark(), "", "the manifest is empty");
  return ReadFields(
      source_, root,
      {Rule("version",
            [this](const Field& f) {
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadInt(source_, f, 1, 1000, &m_.version));
              if (m_.version != 1) return Error(f, "this colossus-launch reads version 1 only");
              return absl::OkStatus();
            }),
       Rule("job", [this](const Field& f) { return ReadJob(f); }),
       Rule("coordinator", [this](const Field& f) { return ReadCoordinator(f); }),
       Rule("nodes", [this](const Field& f) { return ReadNodes(f); }),
       Rule("hostfile", [this](const Field& f) { return ReadHostfile(f); }),
       Rule("worker", [this](const Field& f) { return ReadWorker(f); }),
       Rule("parallelism", [this](const Field& f) { return ReadParallelism(f); }),
       Rule("restart", [this](const Field& f) { return ReadRestart(f); }),
       Rule("health", [this](const Field& f) { return ReadHealth(f); }),
       Rule("checkpoint", [this](const Field& f) { return ReadCheckpoint(f); }),
       Rule("auth", [this](const Field& f) { return ReadAuth(f); }),
       Rule("ssh", [this](const Field& f) { return ReadSsh(f); })},
      TopLevelHint);
}

absl::Status ManifestParser::ReadJob(const Field& job) {
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadFields(
      source_, job,
      {Rule("name",
            [this](const Field& f) {
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &m_.name));
              if (!IsValidName(m_.name)) {
                return Error(f, absl::StrCat("'", m_.name, "' is not a job name (", kNameRule, ")"));
              }
              return absl::OkStatus();
            }),
       Rule("run_dir", [this](const Field& f) { return ReadPath(f, &m_.run_dir); })}));
  if (m_.name.empty()) {
    return ErrorAt(source_, job.mark(), "job.name", absl::StrCat("is required (", kNameRule, ")"));
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::ReadCoordinator(const Field& section) {
  CoordinatorSpec& c = m_.coordinator;
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadFields(
      source_, section,
      {Rule("start",
            [this](const Field& f) {
              int unused = 0;
              return ReadChoice(source_, f, {"here"}, &unused);
            }),
       Rule("listen",
            [this, &c](const Field& f) {
              std::string text;
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &text));
              absl::Status s = ParseHostPort(text, 0, &c.listen.host, &c.listen.port);
              return s.ok() ? s : Error(f, s.message());
            }),
       Rule("advertise",
            [this, &c](const Field& f) {
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &c.advertise));
              if (!IsValidHost(c.advertise)) {
                return Error(f, absl::StrCat("'", c.advertise, "' is not a host name or address "
                                             "(a host only: the port is listen's)"));
              }
              return absl::OkStatus();
            }),
       Rule("address",
            [this, &c](const Field& f) {
              std::string text;
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &text));
              absl::Status s = ParseHostPort(text, 1, &c.address.host, &c.address.port);
              c.start_here = false;
              return s.ok() ? s : Error(f, s.message());
            }),
       Rule("tls", [this](const Field& f) { return ReadTls(f); })}));
  return CheckCoordinatorSection(section);
}

absl::Status ManifestParser::ReadTls(const Field& section) {
  TlsSpec& t = m_.coordinator.tls;
  t.enabled = true;
  auto file = [this](absl::string_view name, std::string* out) {
    return Rule(name, [this, out](const Field& f) { return ReadReadableFile(f, out); });
  };
  return ReadFields(source_, section,
                    {file("cert", &t.cert), file("key", &t.key), file("ca", &t.ca),
                     file("client_ca", &t.client_ca), file("client_cert", &t.client_cert),
                     file("client_key", &t.client_key)});
}

absl::Status ManifestParser::ReadNodes(const Field& f) {
  if (const Field* other = Seen("hostfile")) {
    return Error(f, absl::StrFormat("given together with hostfile (line %d); use one of them",
                                    other->key_mark.line + 1));
  }
  if (!f.value.IsSequence()) {
    return Error(f, absl::StrCat("expected a list of nodes, got ", Describe(f.value)));
  }
  if (f.value.size() == 0) return Error(f, "lists no nodes");
  for (size_t i = 0; i < f.value.size(); ++i) {
    NodeSpec node;
    node.node_rank = static_cast<int>(i);
    const Field element = f.Element(i, f.value[i]);
    seen_.insert_or_assign(element.path, element);
    COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNode(element, &node));
    m_.nodes.push_back(std::move(node));
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::ReadNode(const Field& element, NodeSpec* node) {
  if (!element.value.IsMap()) {
    return Error(element, absl::StrCat("expected a node (a mapping with host, gpus, ...), got ",
                                       Describe(element.value)));
  }
  node->source = Position(source_, element.value.Mark());
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadFields(
      source_, element,
      {Rule("name",
            [this, node](const Field& f) {
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &node->name));
              if (!IsValidName(node->name)) {
                return Error(f, absl::StrCat("'", node->name, "' is not a node name (", kNameRule, ")"));
              }
              return absl::OkStatus();
            }),
       Rule("host",
            [this, node](const Field& f) {
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &node->host));
              if (!IsValidHost(node->host)) {
                return Error(f, absl::StrCat("'", node->host, "' is not a host name or address"));
              }
              return absl::OkStatus();
            }),
       Rule("address",
            [this, node](const Field& f) {
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &node->address));
              if (!IsValidHost(node->address)) {
                return Error(f, absl::StrCat("'", node->address, "' is not a host name or address"));
              }
              return absl::OkStatus();
            }),
       Rule("gpus", [this, node](const Field& f) { return ReadGpus(f, node); }),
       Rule("workers",
            [this, node](const Field& f) {
              return ReadInt(source_, f, 1, kMaxWorkersPerNode, &node->workers);
            }),
       Rule("env", [this, node](const Field& f) { return ReadEnv(source_, f, &node->env); }),
       Rule("remote",
            [this, node](const Field& f) {
              // Without it, CheckNode asks whether the host is this machine.
              return ReadBool(source_, f, &node->remote);
            })}));
  return CheckNode(element, node);
}

absl::Status ManifestParser::ReadGpus(const Field& f, NodeSpec* node) {
  node->gpus.clear();
  if (f.value.IsSequence()) {
    std::set<int> listed;
    for (size_t i = 0; i < f.value.size(); ++i) {
      // Errors point at the element but name the list: "nodes[2].gpus: index 9 is
      // listed twice" reads better than "nodes[2].gpus[4]: ...".
      const Field element{f.path, f.value[i], f.value[i].Mark()};
      int index = 0;
      COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadInt(source_, element, 0, kMaxGpusPerNode - 1, &index));
      if (!listed.insert(index).second) return Error(element, absl::StrFormat("index %d is listed twice", index));
      node->gpus.push_back(index);
    }
    return absl::OkStatus();
  }
  if (!f.value.IsScalar() || f.value.Tag() != "?") {
    return Error(f, absl::StrCat("expected a GPU count or a list of GPU indices, got ", Describe(f.value)));
  }
  int count = 0;
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadInt(source_, f, 0, kMaxGpusPerNode, &count));
  for (int i = 0; i < count; ++i) node->gpus.push_back(i);
  return absl::OkStatus();
}

absl::Status ManifestParser::ReadHostfile(const Field& f) {
  if (const Field* other = Seen("nodes")) {
    return Error(f, absl::StrFormat("given together with nodes (line %d); use one of them",
                                    other->key_mark.line + 1));
  }
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadPath(f, &m_.hostfile));
  absl::StatusOr<std::vector<HostfileEntry>> entries = LoadHostfile(m_.hostfile);
  if (!entries.ok()) {
    if (entries.status().code() != absl::StatusCode::kInvalidArgument) {
      return Error(f, entries.status().message());
    }
    // The hostfile's own line is the useful place; say which manifest named it.
    return absl::InvalidArgumentError(absl::StrCat(entries.status().message(),
                                                   " (the hostfile of ", Position(source_, f.mark()), ")"));
  }
  for (const HostfileEntry& e : *entries) {
    NodeSpec node;
    node.node_rank = static_cast<int>(m_.nodes.size());
    node.host = e.host;
    node.name = IsValidName(e.host) ? e.host : absl::StrCat("node", node.node_rank);
    node.address = e.host;
    for (int i = 0; i < e.slots; ++i) node.gpus.push_back(i);
    node.workers = e.slots;
    node.remote = !IsLocal(e.host);
    node.source = absl::StrFormat("%s:%d", m_.hostfile, e.line);
    m_.nodes.push_back(std::move(node));
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::ReadWorker(const Field& section) {
  WorkerSpec& w = m_.worker;
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadFields(
      source_, section,
      {Rule("command", [this, &w](const Field& f) { return ReadArgv(source_, f, &w.command); }),
       Rule("env", [this, &w](const Field& f) { return ReadEnv(source_, f, &w.env); }),
       Rule("cwd", [this, &w](const Field& f) { return ReadPath(f, &w.cwd); }),
       Rule("log", [this, &w](const Field& f) {
         int mode = 0;
         COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadChoice(source_, f, {"all", "rank0", "none"}, &mode));
         w.log = static_cast<LogMode>(mode);
         return absl::OkStatus();
       })}));
  if (w.command.empty()) {
    return ErrorAt(source_, section.mark(), "worker.command",
                   "is required (the program and arguments of each worker)");
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::ReadParallelism(const Field& section) {
  ParallelismSpec& p = m_.parallelism;
  return ReadFields(
      source_, section,
      {Rule("tensor_parallel",
            [this, &p](const Field& f) { return ReadInt(source_, f, 1, kMaxGpusPerNode, &p.tensor_parallel); }),
       Rule("data_parallel",
            [this](const Field& f) {
              return Error(f, "is derived (world size / tensor_parallel); remove it");
            }),
       Rule("backend", [this, &p](const Field& f) {
         int backend = 0;
         COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadChoice(source_, f, {"auto", "nccl", "gloo"}, &backend));
         p.backend = static_cast<Backend>(backend);
         return absl::OkStatus();
       })});
}

absl::Status ManifestParser::ReadRestart(const Field& section) {
  RestartSpec& r = m_.restart;
  return ReadFields(
      source_, section,
      {Rule("max_restarts", [this, &r](const Field& f) { return ReadInt(source_, f, 0, 1'000'000, &r.max_restarts); }),
       Rule("backoff",
            [this, &r](const Field& f) {
              // Zero is a fair backoff (restart at once); ReadDuration wants > 0.
              if (f.value.IsScalar()) {
                absl::StatusOr<absl::Duration> d = ParseManifestDuration(f.value.Scalar());
                if (d.ok() && *d == absl::ZeroDuration()) {
                  r.backoff = *d;
                  return absl::OkStatus();
                }
              }
              return ReadDuration(source_, f, &r.backoff);
            }),
       Rule("elastic", [this](const Field& f) { return ReadElastic(f); })});
}

absl::Status ManifestParser::ReadElastic(const Field& section) {
  ElasticSpec& e = m_.restart.elastic;
  e.enabled = true;
  return ReadFields(
      source_, section,
      {Rule("min_nodes", [this, &e](const Field& f) { return ReadInt(source_, f, 1, 1'000'000, &e.min_nodes); }),
       Rule("max_nodes", [this, &e](const Field& f) { return ReadInt(source_, f, 1, 1'000'000, &e.max_nodes); }),
       Rule("settle", [this, &e](const Field& f) { return ReadDuration(source_, f, &e.settle); })});
}

absl::Status ManifestParser::ReadHealth(const Field& section) {
  HealthSpec& h = m_.health;
  auto duration = [this](absl::string_view name, absl::Duration* out) {
    return Rule(name, [this, out](const Field& f) { return ReadDuration(source_, f, out); });
  };
  return ReadFields(source_, section,
                    {duration("heartbeat_interval", &h.heartbeat_interval),
                     duration("node_timeout", &h.node_timeout),
                     duration("hang_timeout", &h.hang_timeout),
                     duration("join_timeout", &h.join_timeout)});
}

absl::Status ManifestParser::ReadCheckpoint(const Field& section) {
  CheckpointSpec& c = m_.checkpoint;
  return ReadFields(
      source_, section,
      {Rule("dir", [this, &c](const Field& f) { return ReadPath(f, &c.dir); }),
       Rule("interval_steps",
            [this, &c](const Field& f) { return ReadInt(source_, f, int64_t{0}, int64_t{1} << 50, &c.interval_steps); }),
       Rule("keep", [this, &c](const Field& f) { return ReadInt(source_, f, 1, 1'000'000, &c.keep); })});
}

absl::Status ManifestParser::ReadAuth(const Field& section) {
  AuthSpec& a = m_.auth;
  return ReadFields(
      source_, section,
      {Rule("token",
            [this, &a](const Field& f) {
              if (const Field* other = Seen("auth.token_file")) {
                return Error(f, absl::StrFormat("given together with auth.token_file (line %d); use one",
                                                other->key_mark.line + 1));
              }
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &a.token));
              if (std::string why = TokenProblem(a.token); !why.empty()) return Error(f, why);
              return absl::OkStatus();
            }),
       Rule("token_file", [this](const Field& f) { return ReadTokenFile(f); })});
}

absl::Status ManifestParser::ReadTokenFile(const Field& f) {
  AuthSpec& a = m_.auth;
  if (const Field* other = Seen("auth.token")) {
    return Error(f, absl::StrFormat("given together with auth.token (line %d); use one",
                                    other->key_mark.line + 1));
  }
  COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadPath(f, &a.token_file));
  absl::StatusOr<std::string> text = ReadTextFile(a.token_file, kMaxTokenBytes);
  if (!text.ok()) return Error(f, text.status().message());
  // One trailing newline (echo, an editor) or blank is not part of the token.
  a.token = std::string(absl::StripTrailingAsciiWhitespace(*text));
  if (a.token.empty()) return Error(f, absl::StrCat(a.token_file, " is empty"));
  if (std::string why = TokenProblem(a.token); !why.empty()) {
    return Error(f, absl::StrCat(a.token_file, ": ", why));
  }
  struct stat st = {};
  if (::stat(a.token_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    m_.warnings.push_back(absl::StrFormat(
        "%s: auth.token_file: %s can be read by other users (mode %04o); chmod 600 it",
        Position(source_, f.mark()), a.token_file, st.st_mode & 07777));
  }
  return absl::OkStatus();
}

absl::Status ManifestParser::ReadSsh(const Field& section) {
  SshSpec& s = m_.ssh;
  return ReadFields(
      source_, section,
      {Rule("command", [this, &s](const Field& f) { return ReadArgv(source_, f, &s.command); }),
       Rule("user",
            [this, &s](const Field& f) {
              COLOSSUS_MANIFEST_RETURN_IF_ERROR(ReadNonEmptyString(source_, f, &s.user));
              const bool ok = std::all_of(s.user.begin(), s.user.end(), [](char c) {
                return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
              });
              return ok ? absl::OkStatus() : Error(f, absl::StrCat("'", s.user, "' is not a user name"));
            }),
       Rule("port", [this, &s](const Field& f) { return ReadInt(source_, f, 1, 65535, &s.port); })});
}

}  // namespace colossus::launcher::manifest_internal
