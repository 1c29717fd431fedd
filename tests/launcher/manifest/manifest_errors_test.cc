// Every bad manifest gives exactly one error naming the file, line and column, the field
// and the rule broken; never a crash and never a partial result.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_replace.h"
#include "colossus/launcher/manifest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

// A manifest that is valid once the case's lines are added; the cases below spell out
// whole files where the line numbers matter.
constexpr char kJob[] = "job: {name: j}\n";
constexpr char kWorker[] = "worker: {command: train}\n";
constexpr char kNode[] = "nodes:\n  - {host: localhost, gpus: 2}\n";

struct BadCase {
  const char* name;
  std::string yaml;
  std::string error;  // exact; $DIR is the directory the manifest lives in
};

std::string Ok(const std::string& extra) { return std::string(kJob) + kWorker + kNode + extra; }

const std::vector<BadCase>& Cases() {
  static const auto* cases = new std::vector<BadCase>{
      // ---- YAML itself
      {"MalformedYaml", "job: {name: j\nworker: {command: train}\n",
       "bad.yaml:2:7: malformed YAML: end of map flow not found"},
      {"TwoDocuments", Ok("---\njob: {name: k}\n"),
       "bad.yaml:5:1: a second YAML document starts here; a manifest is one document"},
      {"TwoDocumentsAfterAnEndMarker", "---\n" + Ok("...\n# next\n--- {job: {name: k}}\n"),
       "bad.yaml:6:1: a second YAML document starts here; a manifest is one document"},
      // yaml-cpp 0.7's LoadAll loops forever, allocating, on this (jbeder/yaml-cpp#1040).
      {"StrayCommaBeforeTheDocument", "# header\n  ,\n" + Ok(""),
       "bad.yaml:2:3: malformed YAML: expected the manifest's sections (job:, nodes:, worker:, ...)"},
      {"StrayCommaAfterAList", "- a\n,\n",
       "bad.yaml:1:1: expected a mapping of fields, got a list"},
      {"Empty", "# nothing but a comment\n", "bad.yaml: the manifest is empty"},
      {"TopLevelList", "- job\n", "bad.yaml:1:1: expected a mapping of fields, got a list"},
      {"DuplicateKey", "job: {name: j}\nworker:\n  command: a\n  command: b\n" + std::string(kNode),
       "bad.yaml:4:3: worker.command: listed twice (first on line 3)"},
      // ---- unknown fields
      {"UnknownFieldNearMiss", "job: {name: j}\nworker:\n  comand: train\n" + std::string(kNode),
       "bad.yaml:3:3: worker.comand: unknown field (did you mean 'command'?)"},
      {"UnknownFieldListsKnownOnes", Ok("parallelism: {foo: 1}\n"),
       "bad.yaml:5:15: parallelism.foo: unknown field (expected one of: tensor_parallel, "
       "data_parallel, backend)"},
      {"UnknownTopLevelFieldBelongsElsewhere", Ok("max_restarts: 2\n"),
       "bad.yaml:5:1: max_restarts: unknown field (it belongs under restart)"},
      {"UnknownNodeField", "job: {name: j}\nworker: {command: train}\nnodes:\n  - host: a\n    gpu: 8\n",
       "bad.yaml:5:5: nodes[0].gpu: unknown field (did you mean 'gpus'?)"},
      {"DataParallelIsDerived", Ok("parallelism: {data_parallel: 2}\n"),
       "bad.yaml:5:30: parallelism.data_parallel: is derived (world size / tensor_parallel); remove it"},
      {"Version2", "version: 2\n" + Ok(""),
       "bad.yaml:1:10: version: this colossus-launch reads version 1 only"},
      // ---- required parts
      {"NoJob", std::string(kWorker) + kNode,
       "bad.yaml: job: a required section (job: {name: ...})"},
      {"NoJobName", "job: {run_dir: x}\n" + std::string(kWorker) + kNode,
       "bad.yaml:1:6: job.name: is required (letters, digits, '.', '_' and '-', at most 64)"},
      {"BadJobName", "job: {name: 'my job'}\n" + std::string(kWorker) + kNode,
       "bad.yaml:1:13: job.name: 'my job' is not a job name (letters, digits, '.', '_' and '-', "
       "at most 64)"},
      {"NoNodes", std::string(kJob) + kWorker, "bad.yaml: nodes: required: a list of nodes, or hostfile: PATH"},
      {"EmptyNodeList", std::string(kJob) + kWorker + "nodes: []\n", "bad.yaml:3:8: nodes: lists no nodes"},
      {"NoWorker", std::string(kJob) + kNode,
       "bad.yaml: worker.command: is required (the program and arguments of each worker)"},
      {"NoWorkerCommand", std::string(kJob) + "worker:\n  log: all\n" + kNode,
       "bad.yaml:3:3: worker.command: is required (the program and arguments of each worker)"},
      {"EmptyCommand", std::string(kJob) + "worker: {command: []}\n" + kNode,
       "bad.yaml:2:19: worker.command: the command is empty"},
      {"NodeWithoutHost", std::string(kJob) + kWorker + "nodes:\n  - {gpus: 2}\n",
       "bad.yaml:4:5: nodes[0].host: is required (the machine this node's agent runs on)"},
      {"NodeWithoutGpusOrWorkers", std::string(kJob) + kWorker + "nodes:\n  - {host: a}\n",
       "bad.yaml:4:5: nodes[0].gpus: is required: a GPU count, a list of GPU indices, or 0 with "
       "workers: N for CPU workers"},
      {"NodeNotAMapping", std::string(kJob) + kWorker + "nodes:\n  - gpu-a\n",
       "bad.yaml:4:5: nodes[0]: expected a node (a mapping with host, gpus, ...), got 'gpu-a'"},
      // ---- wrong types, bad counts
      {"GpusAWord", std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: eight}\n",
       "bad.yaml:4:21: nodes[0].gpus: expected a whole number, got 'eight'"},
      {"GpusQuoted", std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: \"8\"}\n",
       "bad.yaml:4:21: nodes[0].gpus: expected a GPU count or a list of GPU indices, got the string \"8\""},
      {"GpusNegative", std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: -2}\n",
       "bad.yaml:4:21: nodes[0].gpus: must be at least 0, got -2"},
      {"GpuIndexListedTwice",
       std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: 8}\n  - {host: b, gpus: 8}\n"
       "  - host: c\n    gpus: [0, 9, 3, 9]\n",
       "bad.yaml:7:21: nodes[2].gpus: index 9 is listed twice"},
      {"GpuIndexNotANumber", std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: [0, x]}\n",
       "bad.yaml:4:25: nodes[0].gpus: expected a whole number, got 'x'"},
      {"WorkersZero", std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: 0, workers: 0}\n",
       "bad.yaml:4:33: nodes[0].workers: must be at least 1, got 0"},
      {"MoreWorkersThanGpus", std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: [0, 1], workers: 4}\n",
       "bad.yaml:4:38: nodes[0].workers: 4 workers on 2 GPUs; a GPU node runs one worker per GPU "
       "(leave workers out)"},
      {"TensorParallelZero", Ok("parallelism: {tensor_parallel: 0}\n"),
       "bad.yaml:5:32: parallelism.tensor_parallel: must be at least 1, got 0"},
      {"TensorParallelAList", Ok("parallelism: {tensor_parallel: [2]}\n"),
       "bad.yaml:5:32: parallelism.tensor_parallel: expected a whole number, got a list"},
      {"MaxRestartsNegative", Ok("restart: {max_restarts: -1}\n"),
       "bad.yaml:5:25: restart.max_restarts: must be at least 0, got -1"},
      {"RemoteNotABool", std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: 1, remote: maybe}\n",
       "bad.yaml:4:32: nodes[0].remote: expected true or false, got 'maybe'"},
      {"LogModeUnknown", std::string(kJob) + "worker: {command: train, log: verbose}\n" + kNode,
       "bad.yaml:2:31: worker.log: expected one of all, rank0, none, got 'verbose'"},
      {"BackendUnknown", Ok("parallelism: {backend: mpi}\n"),
       "bad.yaml:5:24: parallelism.backend: expected one of auto, nccl, gloo, got 'mpi'"},
      {"EnvNotAMapping", std::string(kJob) + "worker: {command: train, env: [A=1]}\n" + kNode,
       "bad.yaml:2:31: worker.env: expected a mapping NAME: value, got a list"},
      {"EnvBadName", std::string(kJob) + "worker:\n  command: train\n  env: {1X: a}\n" + kNode,
       "bad.yaml:4:9: worker.env.1X: '1X' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"},
      {"EnvLauncherVariable", std::string(kJob) + kWorker + "nodes:\n  - host: a\n    gpus: 1\n    env: {RANK: 3}\n",
       "bad.yaml:6:11: nodes[0].env.RANK: colossus-launch sets this variable for each worker; it "
       "cannot be overridden"},
      {"CommandWithAPipe", std::string(kJob) + "worker: {command: train | tee log}\n" + kNode,
       "bad.yaml:2:19: worker.command: '|' (character 7) is shell syntax, but the command is not "
       "run by a shell; quote it, or write [\"sh\", \"-c\", \"...\"]"},
      {"CommandUnterminatedQuote", std::string(kJob) + "worker: {command: \"train 'a b\"}\n" + kNode,
       "bad.yaml:2:19: worker.command: the ' at character 7 is never closed"},
      // ---- nodes against each other
      {"DuplicateHost", std::string(kJob) + kWorker + "nodes:\n  - {host: gpu-a, gpus: 8}\n  - {host: gpu-a, gpus: 8}\n",
       "bad.yaml:5:12: nodes[1].host: 'gpu-a' is already the host of nodes[0] (line 4); to run "
       "two agents on one machine, give each its own address"},
      {"DuplicateAddress",
       std::string(kJob) + kWorker + "nodes:\n  - {host: a, address: 10.0.0.1, gpus: 1}\n"
       "  - {host: b, address: 10.0.0.1, gpus: 1}\n",
       "bad.yaml:5:24: nodes[1].address: '10.0.0.1' is already the address of nodes[0] (line 4)"},
      {"DuplicateName",
       std::string(kJob) + kWorker + "nodes:\n  - {name: n, host: a, gpus: 1}\n  - {name: n, host: b, gpus: 1}\n",
       "bad.yaml:5:12: nodes[1].name: the name 'n' is already nodes[0]'s (line 4); node names are unique"},
      {"SharedHostOverlappingGpus",
       std::string(kJob) + kWorker + "nodes:\n  - {host: a, address: 10.0.0.1, gpus: [0, 1]}\n"
       "  - {host: a, address: 10.0.0.2, gpus: [2, 1]}\n",
       "bad.yaml:5:40: nodes[1].gpus: GPU 1 of host 'a' is already nodes[0]'s (line 4); nodes on "
       "one host need disjoint GPUs"},
      {"SharedHostWithoutNames",
       std::string(kJob) + kWorker + "nodes:\n  - {host: a, address: 10.0.0.1, workers: 1}\n"
       "  - {host: a, address: 10.0.0.2, workers: 1}\n",
       "bad.yaml:5:12: nodes[1].host: the name 'a' (taken from the host) is already nodes[0]'s "
       "(line 4); give each node on this host a name"},
      {"MixedCpuAndGpuNodes",
       std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: 2}\n  - {host: b, gpus: 0, workers: 2}\n",
       "bad.yaml:5:21: nodes[1].gpus: has no GPUs but nodes[0] (a) has GPUs; every node of a job "
       "has GPUs, or none does"},
      {"NodesAndHostfile", Ok("hostfile: hosts.txt\n"),
       "bad.yaml:5:11: hostfile: given together with nodes (line 3); use one of them"},
      // ---- parallelism
      {"TensorParallelDoesNotDivide",
       std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: 8}\n  - {host: b, gpus: 6}\n"
       "parallelism:\n  tensor_parallel: 4\n",
       "bad.yaml:7:20: parallelism.tensor_parallel: 4 does not divide the 6 workers of nodes[1] "
       "(b); a tensor-parallel group must lie within one node"},
      {"TensorParallelLargerThanNode", Ok("parallelism: {tensor_parallel: 4}\n"),
       "bad.yaml:5:32: parallelism.tensor_parallel: 4 is more than the 2 workers of nodes[0] "
       "(localhost); a tensor-parallel group must lie within one node"},
      {"NcclWithoutGpus",
       std::string(kJob) + kWorker + "nodes:\n  - {host: a, gpus: 0, workers: 2}\nparallelism: {backend: nccl}\n",
       "bad.yaml:5:24: parallelism.backend: nccl needs GPUs and no node has any (use gloo, or auto)"},
      // ---- restart and health
      {"MinNodesAboveMaxNodes", Ok("restart:\n  elastic: {min_nodes: 3, max_nodes: 1}\n"),
       "bad.yaml:6:24: restart.elastic.min_nodes: 3 is more than max_nodes (1)"},
      {"MinNodesAboveNodeCount", Ok("restart:\n  elastic: {min_nodes: 2}\n"),
       "bad.yaml:6:24: restart.elastic.min_nodes: 2 is more than the 1 node listed"},
      {"MaxNodesAboveNodeCount", Ok("restart:\n  elastic: {max_nodes: 5}\n"),
       "bad.yaml:6:24: restart.elastic.max_nodes: 5 is more than the 1 node listed"},
      {"DurationWithoutUnit", Ok("health:\n  node_timeout: 10\n"),
       "bad.yaml:6:17: health.node_timeout: '10' is not a duration (a unit is required: ms, s, m "
       "or h; e.g. \"500ms\", \"10s\", \"2m\", \"1h\")"},
      {"DurationUnknownUnit", Ok("restart: {backoff: 5x}\n"),
       "bad.yaml:5:20: restart.backoff: '5x' is not a duration (unknown unit 'x'; use ms, s, m or "
       "h; e.g. \"500ms\", \"10s\", \"2m\", \"1h\")"},
      {"DurationNegative", Ok("health: {hang_timeout: -1m}\n"),
       "bad.yaml:5:24: health.hang_timeout: '-1m' is not a duration (it is negative; e.g. "
       "\"500ms\", \"10s\", \"2m\", \"1h\")"},
      {"DurationZero", Ok("health: {heartbeat_interval: 0s}\n"),
       "bad.yaml:5:30: health.heartbeat_interval: must be longer than zero"},
      {"NodeTimeoutBelowTwoBeats", Ok("health:\n  heartbeat_interval: 2s\n  node_timeout: 3s\n"),
       "bad.yaml:7:17: health.node_timeout: node_timeout (3s) must be at least twice "
       "heartbeat_interval (2s), or one late beat trips it"},
      {"HeartbeatLongerThanDefaultTimeout", Ok("health:\n  heartbeat_interval: 20s\n"),
       "bad.yaml:6:23: health.heartbeat_interval: node_timeout (30s) must be at least twice "
       "heartbeat_interval (20s), or one late beat trips it"},
      // ---- coordinator
      {"AddressWithoutPort", Ok("coordinator: {address: coord}\n"),
       "bad.yaml:5:24: coordinator.address: 'coord' is not host:port (no port; e.g. "
       "10.0.0.1:29400 or [::1]:29400)"},
      {"AddressPortOutOfRange", Ok("coordinator: {address: 'coord:99999'}\n"),
       "bad.yaml:5:24: coordinator.address: 'coord:99999' is not host:port (the port must be a "
       "number from 1 to 65535; e.g. 10.0.0.1:29400 or [::1]:29400)"},
      {"AddressPortZero", Ok("coordinator: {address: 'coord:0'}\n"),
       "bad.yaml:5:24: coordinator.address: 'coord:0' is not host:port (the port must be a number "
       "from 1 to 65535; e.g. 10.0.0.1:29400 or [::1]:29400)"},
      {"AddressUnbracketedIpv6", Ok("coordinator: {address: '::1:29400'}\n"),
       "bad.yaml:5:24: coordinator.address: '::1:29400' is not host:port (an IPv6 address goes in "
       "brackets; e.g. 10.0.0.1:29400 or [::1]:29400)"},
      {"AddressAndStartHere", Ok("coordinator: {start: here, address: 'c:1'}\n"),
       "bad.yaml:5:37: coordinator.address: given together with start: here; a coordinator is "
       "either started here or reached at an address"},
      {"ListenWithAddress", Ok("auth: {token: t}\ncoordinator: {listen: '0.0.0.0:1', address: 'c:1'}\n"),
       "bad.yaml:6:23: coordinator.listen: only for a coordinator started here (this one is "
       "reached at coordinator.address)"},
      {"StartSomewhereElse", Ok("coordinator: {start: there}\n"),
       "bad.yaml:5:22: coordinator.start: expected one of here, got 'there'"},
      {"RunningCoordinatorNeedsAToken", Ok("coordinator: {address: 'c:29400'}\n"),
       "bad.yaml:5:24: coordinator.address: a running coordinator needs its token: set "
       "auth.token_file (or auth.token)"},
      {"LoopbackListenWithRemoteNodes",
       std::string(kJob) + kWorker + "nodes:\n  - {host: gpu-a, gpus: 1}\ncoordinator: {listen: '127.0.0.1:5000'}\n",
       "bad.yaml:5:23: coordinator.listen: 127.0.0.1 is reachable from this machine only, but "
       "nodes[0] (gpu-a) is remote"},
      {"TlsCertWithoutKey", Ok("coordinator:\n  tls: {cert: good.token}\n"),
       "bad.yaml:6:15: coordinator.tls.cert: needs coordinator.tls.key too"},
      {"TlsForRunningCoordinatorNeedsCa",
       Ok("auth: {token: t}\ncoordinator:\n  address: 'c:1'\n  tls: {client_cert: good.token, client_key: good.token}\n"),
       "bad.yaml:8:8: coordinator.tls: needs ca (the CA that signed the running coordinator's certificate)"},
      {"TlsFileMissing", Ok("coordinator:\n  tls: {cert: nope.pem, key: nope.key}\n"),
       "bad.yaml:6:15: coordinator.tls.cert: $DIR/nope.pem: cannot open: No such file or directory"},
      // ---- auth
      {"TokenFileMissing", Ok("auth: {token_file: missing.token}\n"),
       "bad.yaml:5:20: auth.token_file: $DIR/missing.token: cannot open: No such file or directory"},
      {"TokenFileEmpty", Ok("auth:\n  token_file: empty.token\n"),
       "bad.yaml:6:15: auth.token_file: $DIR/empty.token is empty"},
      {"TokenFileIsADirectory", Ok("auth:\n  token_file: token.dir\n"),
       "bad.yaml:6:15: auth.token_file: $DIR/token.dir: cannot read: Is a directory"},
      {"TokenAndTokenFile", Ok("auth:\n  token: abc\n  token_file: good.token\n"),
       "bad.yaml:7:15: auth.token_file: given together with auth.token (line 6); use one"},
      {"TokenWithASpace", Ok("auth: {token: 'a b'}\n"),
       "bad.yaml:5:15: auth.token: byte 1 (0x20) is not a printable, non-blank ASCII character; a "
       "token travels in gRPC metadata"},
      // ---- hostfile named by the manifest
      {"HostfileMissing", std::string(kJob) + kWorker + "hostfile: nowhere.txt\n",
       "bad.yaml:3:11: hostfile: $DIR/nowhere.txt: cannot open: No such file or directory"},
      {"HostfileSyntax", std::string(kJob) + kWorker + "hostfile: bad_hosts.txt\n",
       "$DIR/bad_hosts.txt:3:13: slots: expected a whole number from 1 to 1024, got 'x' (the "
       "hostfile of bad.yaml:3:11)"},
  };
  return *cases;
}

class BadManifest : public ::testing::TestWithParam<BadCase> {
 protected:
  static void SetUpTestSuite() {
    // One directory per process: ctest runs the cases as parallel processes.
    dir_ = new std::string(::testing::TempDir() + "manifest_errors_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_ + "/token.dir");
    std::ofstream(*dir_ + "/empty.token") << "";
    std::ofstream(*dir_ + "/good.token") << "secret\n";
    chmod((*dir_ + "/good.token").c_str(), 0600);
    std::ofstream(*dir_ + "/bad_hosts.txt") << "# two hosts\ngpu-a slots=8\ngpu-b slots=x\n";
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  static std::string* dir_;
};
std::string* BadManifest::dir_ = nullptr;

TEST_P(BadManifest, GivesExactlyTheExpectedError) {
  const BadCase& c = GetParam();
  ManifestOptions options;
  options.base_dir = *dir_;
  options.working_dir = *dir_;
  options.is_local = [](std::string_view host) { return host == "localhost"; };
  absl::StatusOr<Manifest> m = ParseManifest(c.yaml, "bad.yaml", options);
  ASSERT_FALSE(m.ok()) << "accepted:\n" << c.yaml;
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(m.status().message()), absl::StrReplaceAll(c.error, {{"$DIR", *dir_}}))
      << c.yaml;
}

INSTANTIATE_TEST_SUITE_P(Cases, BadManifest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

// The base the cases start from is itself valid, so each case fails for its own reason.
TEST(BadManifestBase, TheBaseIsValid) {
  ManifestOptions options;
  options.is_local = [](std::string_view host) { return host == "localhost"; };
  absl::StatusOr<Manifest> m = ParseManifest(Ok(""), "ok.yaml", options);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->world_size, 2);
}

// Damaged versions of the shipped examples (cut short at every byte; every byte replaced
// by characters that matter to YAML) each give a complete manifest or one error that
// starts with the file's name: never a crash, an exception or another kind of error.
TEST(DamagedManifest, EveryPrefixAndByteMutationGivesOkOrOnePositionedError) {
  const std::string dir = std::string(COLOSSUS_SOURCE_DIR) + "/examples/manifests";
  ManifestOptions options;
  options.base_dir = dir;
  options.working_dir = "/w";
  options.is_local = [](std::string_view host) { return host == "localhost"; };
  int64_t parsed = 0;
  int64_t refused = 0;
  for (const char* name : {"laptop.yaml", "node8.yaml", "cluster.yaml"}) {
    std::ifstream in(dir + "/" + name);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(text.empty()) << name;
    std::vector<std::string> variants;
    for (size_t n = 0; n < text.size(); ++n) variants.push_back(text.substr(0, n));
    for (size_t i = 0; i < text.size(); ++i) {
      // Damage inside a comment line proves nothing; skip those lines.
      const size_t line_start = text.rfind('\n', i) == std::string::npos ? 0 : text.rfind('\n', i) + 1;
      const size_t first = text.find_first_not_of(' ', line_start);
      if (first < i && text[first] == '#') continue;
      for (char c : {':', ',', '-', ' ', '[', '{', '"', '\n', '0', 'x'}) {
        if (text[i] == c) continue;
        std::string v = text;
        v[i] = c;
        variants.push_back(std::move(v));
      }
    }
    for (const std::string& v : variants) {
      absl::StatusOr<Manifest> m = ParseManifest(v, "damaged.yaml", options);
      if (m.ok()) {
        ++parsed;
        EXPECT_GT(m->world_size, 0);
        EXPECT_FALSE(m->nodes.empty());
        continue;
      }
      ++refused;
      ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status() << "\n" << v;
      ASSERT_EQ(std::string(m.status().message()).rfind("damaged.yaml", 0), 0u) << m.status();
    }
  }
  // Both outcomes occur: some damage is harmless (a changed digit, a space in a comment).
  EXPECT_GT(refused, 10000);
  EXPECT_GT(parsed, 1000);
  std::printf("%lld damaged manifests: %lld refused, %lld still valid\n",
              static_cast<long long>(refused + parsed), static_cast<long long>(refused),
              static_cast<long long>(parsed));
}

TEST(LoadManifest, AMissingFileIsNotFoundAndNamesThePath) {
  absl::StatusOr<Manifest> m = LoadManifest("/nonexistent/cluster.yaml");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(m.status().message()),
            "/nonexistent/cluster.yaml: cannot open: No such file or directory");
}

TEST(LoadManifest, ErrorsNameTheFileAsGiven) {
  const std::string path = ::testing::TempDir() + "typo.yaml";
  std::ofstream(path) << "job: {name: j}\nworker: {command: t}\nnodes:\n  - {host: localhost, gpus: 1, wrkers: 1}\n";
  absl::StatusOr<Manifest> m = LoadManifest(path);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(std::string(m.status().message()),
            path + ":4:32: nodes[0].wrkers: unknown field (did you mean 'workers'?)");
}

}  // namespace
}  // namespace colossus::launcher
