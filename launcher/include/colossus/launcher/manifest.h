// The cluster manifest: what colossus-launch, the node agents and the coordinator are
// told about a job. The schema, field by field with defaults and rules, is documented in
// launcher/MANIFEST.md; the examples are in examples/manifests/.
//
// Loading a manifest reads YAML (yaml-cpp), checks every rule, resolves paths and fills
// every default, and computes the derived layout (world size, data-parallel size, the
// global rank of each node's first worker). The result is all or nothing: either a
// complete, valid Manifest or one InvalidArgument error, the first one met in reading
// order (cross-field rules after the fields themselves), of the form
//
//   cluster.yaml:14:7: nodes[2].gpus: index 9 is listed twice
//   <file>:<line>:<column>: <field path>: <the rule broken>
//
// Lines and columns count from 1. Errors that belong to no single place (a required
// section that is absent) leave out the line and column. Hostfile errors name the
// hostfile's own line. A manifest that cannot be opened gives NotFound (or the errno's
// code), naming the path.
//
// Thread safety: the functions here are reentrant; a Manifest is a plain value.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colossus::launcher {

// "host:port". IPv6 hosts are written in brackets ("[::1]:29400") and stored without.
struct HostPort {
  std::string host;
  int port = 0;  // 0 only where a free port is asked for (coordinator.listen)
  std::string ToString() const;  // brackets an IPv6 host again
};

// TLS for the coordinator's gRPC port; paths are absolute and were readable at load.
struct TlsSpec {
  bool enabled = false;      // the `tls:` section is present
  std::string cert;          // the coordinator's certificate (PEM); started here only
  std::string key;           // its private key (PEM); started here only
  std::string ca;            // what agents and the launcher verify the coordinator with
  std::string client_ca;     // set: the coordinator requires client certs signed by it
  std::string client_cert;   // presented by agents and the launcher (with client_key)
  std::string client_key;
};

struct CoordinatorSpec {
  bool start_here = true;   // false: connect to `address`
  HostPort listen;          // start_here: bind address; port 0 picks a free port
  std::string advertise;    // start_here: the host agents dial (the port is listen's or
                            // the one picked)
  HostPort address;         // !start_here: the running coordinator
  TlsSpec tls;
};

// One node: one agent, `workers` worker processes.
struct NodeSpec {
  std::string name;       // unique; names the node in logs, status and file names
  std::string host;       // where the agent runs (ssh target when remote)
  std::string address;    // how other nodes reach it (MASTER_ADDR when it holds rank 0)
  std::vector<int> gpus;  // physical GPU indices, local rank i gets gpus[i]; empty: CPU
  int workers = 0;        // worker processes: gpus.size() on a GPU node, >= 1 always
  std::map<std::string, std::string> env;  // applied after worker.env (wins over it)
  bool remote = false;    // true: the agent is started over ssh; false: a local process
  // Derived: the layout of the full node set in manifest order.
  int node_rank = 0;        // index in Manifest::nodes
  int64_t first_rank = 0;   // global rank of this node's local rank 0
  std::string source;       // where it was declared: "cluster.yaml:12:5" or "hosts.txt:3"
};

enum class LogMode { kAll, kRank0, kNone };
enum class Backend { kAuto, kNccl, kGloo };
std::string_view LogModeName(LogMode mode);
std::string_view BackendName(Backend backend);

struct WorkerSpec {
  std::vector<std::string> command;        // argv, never empty; not run through a shell
  std::map<std::string, std::string> env;  // for every worker (nodes[i].env wins)
  std::string cwd;                         // absolute; the same path on every node
  LogMode log = LogMode::kAll;             // which ranks' output reaches the terminal
};

struct ParallelismSpec {
  int tensor_parallel = 1;     // divides every node's worker count
  int64_t data_parallel = 0;   // derived: world_size / tensor_parallel
  Backend backend = Backend::kAuto;
};

struct ElasticSpec {
  bool enabled = false;  // the `elastic:` section is present
  int min_nodes = 0;     // without elastic: both equal the node count
  int max_nodes = 0;
  absl::Duration settle = absl::Seconds(10);  // quiet time after the last join before a
                                              // generation forms with >= min_nodes
};

struct RestartSpec {
  int max_restarts = 3;
  absl::Duration backoff = absl::Seconds(5);  // restart backoff of a crash loop (JobConfig)
  ElasticSpec elastic;
};

struct HealthSpec {
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration node_timeout = absl::Seconds(30);   // silent this long: the node is dead
  absl::Duration hang_timeout = absl::Minutes(10);   // step unchanged this long: stuck
  absl::Duration join_timeout = absl::Minutes(5);    // to wait for the nodes at start
};

struct CheckpointSpec {
  std::string dir;               // absolute; default <run_dir>/checkpoints
  int64_t interval_steps = 1000; // 0: no periodic checkpoints
  int keep = 3;                  // committed checkpoints kept
};

struct AuthSpec {
  std::string token;       // the token itself (read from token_file when that is given)
  std::string token_file;  // absolute, or empty when the token was written inline
  bool generate = false;   // neither given: colossus-launch makes one per job
};

struct SshSpec {
  std::vector<std::string> command = {"ssh", "-o", "BatchMode=yes"};
  std::string user;  // empty: ssh's default
  int port = 0;      // 0: ssh's default
};

struct Manifest {
  std::string source;    // the manifest's path (or name) as given
  std::string base_dir;  // absolute; relative paths in the file resolve against it
  int version = 1;

  std::string name;     // job.name
  std::string run_dir;  // absolute
  CoordinatorSpec coordinator;
  std::vector<NodeSpec> nodes;  // never empty
  std::string hostfile;         // absolute, when the nodes came from a hostfile
  WorkerSpec worker;
  ParallelismSpec parallelism;
  RestartSpec restart;
  HealthSpec health;
  CheckpointSpec checkpoint;
  AuthSpec auth;
  SshSpec ssh;

  // Derived.
  int64_t world_size = 0;  // sum of workers over the nodes
  int64_t num_gpus = 0;    // sum of gpus.size(); 0 for a CPU-only job
  bool any_remote = false;

  // Advice that is not an error ("token file readable by others"), each naming its
  // place like an error does. colossus-launch prints them.
  std::vector<std::string> warnings;
};

// What "this machine" means and where "here" is; tests replace these.
struct ManifestOptions {
  // Relative paths in the file resolve against this; empty: the directory of the
  // source name (or the working directory when the name has none).
  std::string base_dir;
  // Defaults that the file does not write (run_dir, worker.cwd) resolve against this;
  // empty: the process's working directory.
  std::string working_dir;
  // Whether a host is this machine (a node's `remote` default; empty: IsThisMachine).
  std::function<bool(std::string_view host)> is_local;
  // The host agents dial when the coordinator is started here and some node is remote;
  // empty: this machine's hostname.
  std::string local_hostname;
};

absl::StatusOr<Manifest> LoadManifest(const std::string& path,
                                      const ManifestOptions& options = {});
// `source_name` names the text in errors (and gives the base directory, see options).
absl::StatusOr<Manifest> ParseManifest(std::string_view yaml, std::string_view source_name,
                                       const ManifestOptions& options = {});

// A short human summary (job, nodes, GPUs, world size, tensor x data, coordinator,
// restart and health policy) for colossus-launch --dry-run. Long node lists are cut.
std::string DescribeManifest(const Manifest& manifest);

// The DeepSpeed/MPI hostfile: one `host [slots=N]` per line (no slots: 1), `#` comments,
// blank lines. Slots are GPUs per host. A host listed twice is an error.
struct HostfileEntry {
  std::string host;
  int slots = 1;
  int line = 0;  // 1-based
};
absl::StatusOr<std::vector<HostfileEntry>> LoadHostfile(const std::string& path);
absl::StatusOr<std::vector<HostfileEntry>> ParseHostfile(std::string_view text,
                                                         std::string_view source_name);

// "500ms", "10s", "2m", "1h", "1.5s", "1m30s" (units ms, s, m, h; a unit is required).
// The error says what was wrong, without a field name.
absl::StatusOr<absl::Duration> ParseManifestDuration(std::string_view text);

// A command line split the way a POSIX shell splits words: blanks separate, '...' is
// literal, "..." honours \" \\ \$ \`, a backslash quotes the next character. Nothing is
// expanded. Shell operators (| ; & < > `) outside quotes are refused: the command is run
// directly, not by a shell.
absl::StatusOr<std::vector<std::string>> SplitCommandLine(std::string_view text);

// localhost, a loopback address, this machine's hostname (full or short), or an address
// of one of its interfaces.
bool IsThisMachine(std::string_view host);

}  // namespace colossus::launcher
