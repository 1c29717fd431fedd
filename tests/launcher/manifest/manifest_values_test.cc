// The small languages inside a manifest (durations, command lines, hostfiles), the
// defaults, path resolution, the token file, and what counts as this machine.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "colossus/launcher/manifest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// ---- durations ------------------------------------------------------------------------

TEST(ManifestDuration, ParsesEveryUnitFractionsAndCompounds) {
  const struct {
    const char* text;
    absl::Duration want;
  } cases[] = {
      {"500ms", absl::Milliseconds(500)}, {"10s", absl::Seconds(10)},
      {"2m", absl::Minutes(2)},           {"1h", absl::Hours(1)},
      {"1.5s", absl::Milliseconds(1500)}, {"0.25m", absl::Seconds(15)},
      {"1m30s", absl::Seconds(90)},       {"1h2m3s4ms", absl::Milliseconds(3723004)},
      {" 7s ", absl::Seconds(7)},         {"0s", absl::ZeroDuration()},
  };
  for (const auto& c : cases) {
    absl::StatusOr<absl::Duration> d = ParseManifestDuration(c.text);
    ASSERT_TRUE(d.ok()) << c.text << ": " << d.status();
    EXPECT_EQ(*d, c.want) << c.text;
  }
}

TEST(ManifestDuration, RefusesWhatIsNotADurationAndSaysWhy) {
  const struct {
    const char* text;
    const char* why;
  } cases[] = {
      {"", "it is empty"},
      {"10", "a unit is required: ms, s, m or h"},
      {"5x", "unknown unit 'x'"},
      {"5 s", "a unit is required"},
      {"-1s", "it is negative"},
      {"s", "a number must come before the unit"},
      {"1.5.2s", "a unit is required"},
      {"10sec", "unknown unit 'sec'"},
      {"9999999999999h", "the number is too large"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<absl::Duration> d = ParseManifestDuration(c.text);
    ASSERT_FALSE(d.ok()) << "accepted '" << c.text << "'";
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(c.why)) << c.text;
  }
}

// ---- command lines --------------------------------------------------------------------

TEST(ManifestCommandLine, SplitsLikeAShellWithoutExpanding) {
  const struct {
    const char* text;
    std::vector<std::string> want;
  } cases[] = {
      {"train --steps 10", {"train", "--steps", "10"}},
      {"  a\t b  ", {"a", "b"}},
      {"a 'b c' d", {"a", "b c", "d"}},
      {"a \"b \\\"c\\\" $d\"", {"a", "b \"c\" $d"}},
      {"a \"x\\y\"", {"a", "x\\y"}},  // \y is not an escape inside double quotes
      {"a b\\ c", {"a", "b c"}},
      {"a '' b", {"a", "", "b"}},
      {"pre'fix'\"ed\"", {"prefixed"}},
      {"echo $HOME", {"echo", "$HOME"}},  // nothing is expanded
      {"a '|' \";\"", {"a", "|", ";"}},   // quoted operators are plain text
      {"", {}},
  };
  for (const auto& c : cases) {
    absl::StatusOr<std::vector<std::string>> argv = SplitCommandLine(c.text);
    ASSERT_TRUE(argv.ok()) << c.text << ": " << argv.status();
    EXPECT_EQ(*argv, c.want) << c.text;
  }
}

TEST(ManifestCommandLine, RefusesUnterminatedQuotesAndShellOperators) {
  const struct {
    const char* text;
    const char* error;
  } cases[] = {
      {"a 'b", "the ' at character 3 is never closed"},
      {"a \"b", "the \" at character 3 is never closed"},
      {"a b\\", "a backslash ends the command (character 4)"},
      {"a > log", "'>' (character 3) is shell syntax"},
      {"a; b", "';' (character 2) is shell syntax"},
      {"a && b", "'&' (character 3) is shell syntax"},
      {"a `b`", "'`' (character 3) is shell syntax"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<std::vector<std::string>> argv = SplitCommandLine(c.text);
    ASSERT_FALSE(argv.ok()) << "accepted " << c.text;
    EXPECT_THAT(std::string(argv.status().message()), HasSubstr(c.error)) << c.text;
  }
}

// ---- hostfiles ------------------------------------------------------------------------

TEST(Hostfile, ParsesHostsSlotsCommentsAndBlankLines) {
  absl::StatusOr<std::vector<HostfileEntry>> hosts = ParseHostfile(
      "# cluster\n\nworker-1 slots=4\n  worker-2   slots=8  # rack 2\r\n10.0.0.3\n[bad]\n" + std::string(),
      "hosts");
  ASSERT_FALSE(hosts.ok());  // "[bad]" is not a host: the error names its line
  EXPECT_EQ(std::string(hosts.status().message()),
            "hosts:6:1: '[bad]' is not a host name or address (a line is `host slots=N`)");

  hosts = ParseHostfile("# cluster\n\nworker-1 slots=4\n  worker-2   slots=8  # rack 2\r\n10.0.0.3\n",
                        "hosts");
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 3u);
  EXPECT_EQ((*hosts)[0].host, "worker-1");
  EXPECT_EQ((*hosts)[0].slots, 4);
  EXPECT_EQ((*hosts)[0].line, 3);
  EXPECT_EQ((*hosts)[1].host, "worker-2");
  EXPECT_EQ((*hosts)[1].slots, 8);
  EXPECT_EQ((*hosts)[2].host, "10.0.0.3");
  EXPECT_EQ((*hosts)[2].slots, 1);  // no slots: one, as in MPI
  EXPECT_EQ((*hosts)[2].line, 5);
}

TEST(Hostfile, ErrorsNameTheLineAndColumn) {
  const struct {
    const char* text;
    const char* error;
  } cases[] = {
      {"a slots=8\nb slots=0\n", "h:2:9: slots: expected a whole number from 1 to 1024, got '0'"},
      {"a slots=-1\n", "h:1:9: slots: expected a whole number from 1 to 1024, got '-1'"},
      {"a slots=\n", "h:1:9: slots: expected a whole number from 1 to 1024, got ''"},
      {"a slots=2000\n", "h:1:9: slots: expected a whole number from 1 to 1024, got '2000'"},
      {"a max_slots=8\n", "h:1:3: unknown attribute 'max_slots=8' (a line is `host slots=N`)"},
      {"a 8\n", "h:1:3: unknown attribute '8' (a line is `host slots=N`)"},
      {"a slots=1 slots=2\n", "h:1:11: slots is given twice"},
      {"a slots=8\n# b\n  a slots=4\n", "h:3:3: host 'a' is listed twice (first on line 1)"},
      {"a@b slots=1\n", "h:1:1: 'a@b' is not a host name or address (a line is `host slots=N`)"},
      {"# only comments\n\n", "h: lists no hosts (one `host slots=N` per line)"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<std::vector<HostfileEntry>> hosts = ParseHostfile(c.text, "h");
    ASSERT_FALSE(hosts.ok()) << "accepted " << c.text;
    EXPECT_EQ(std::string(hosts.status().message()), c.error);
  }
}

TEST(Hostfile, LoadNamesAMissingFile) {
  absl::StatusOr<std::vector<HostfileEntry>> hosts = LoadHostfile("/nonexistent/hosts");
  ASSERT_FALSE(hosts.ok());
  EXPECT_EQ(hosts.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(hosts.status().message()), HasSubstr("/nonexistent/hosts"));
}

// ---- defaults and paths ---------------------------------------------------------------

ManifestOptions Options(const std::string& base, const std::string& cwd) {
  ManifestOptions o;
  o.base_dir = base;
  o.working_dir = cwd;
  o.is_local = [](std::string_view host) { return host == "localhost"; };
  o.local_hostname = "head";
  return o;
}

TEST(ManifestDefaults, AMinimalManifestGetsEveryDefault) {
  absl::StatusOr<Manifest> m = ParseManifest(
      "job: {name: tiny}\nworker: {command: [w]}\nnodes: [{host: localhost, gpus: 1}]\n", "m.yaml",
      Options("/etc/jobs", "/home/u"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->version, 1);
  EXPECT_EQ(m->run_dir, "/home/u/runs/tiny");
  EXPECT_EQ(m->worker.cwd, "/home/u");
  EXPECT_EQ(m->worker.log, LogMode::kAll);
  EXPECT_THAT(m->worker.env, IsEmpty());
  EXPECT_EQ(m->checkpoint.dir, "/home/u/runs/tiny/checkpoints");
  EXPECT_EQ(m->checkpoint.interval_steps, 1000);
  EXPECT_EQ(m->checkpoint.keep, 3);
  EXPECT_EQ(m->parallelism.tensor_parallel, 1);
  EXPECT_EQ(m->parallelism.data_parallel, 1);
  EXPECT_EQ(m->parallelism.backend, Backend::kAuto);
  EXPECT_EQ(m->restart.max_restarts, 3);
  EXPECT_EQ(m->restart.backoff, absl::Seconds(5));
  EXPECT_FALSE(m->restart.elastic.enabled);
  EXPECT_EQ(m->restart.elastic.min_nodes, 1);
  EXPECT_EQ(m->restart.elastic.max_nodes, 1);
  EXPECT_EQ(m->health.heartbeat_interval, absl::Seconds(1));
  EXPECT_EQ(m->health.node_timeout, absl::Seconds(30));
  EXPECT_EQ(m->health.hang_timeout, absl::Minutes(10));
  EXPECT_EQ(m->health.join_timeout, absl::Minutes(5));
  EXPECT_TRUE(m->auth.generate);
  EXPECT_THAT(m->ssh.command, ElementsAre("ssh", "-o", "BatchMode=yes"));
  EXPECT_EQ(m->ssh.port, 0);
  EXPECT_TRUE(m->ssh.user.empty());
  EXPECT_TRUE(m->coordinator.start_here);
  EXPECT_EQ(m->coordinator.listen.ToString(), "127.0.0.1:0");
  const NodeSpec& n = m->nodes[0];
  EXPECT_EQ(n.name, "localhost");
  EXPECT_EQ(n.address, "localhost");
  EXPECT_THAT(n.gpus, ElementsAre(0));
  EXPECT_EQ(n.workers, 1);
  EXPECT_FALSE(n.remote);
}

TEST(ManifestDefaults, CpuNodeWithoutWorkersRunsOneAndWorkersAloneMeanCpu) {
  absl::StatusOr<Manifest> m = ParseManifest(
      "job: {name: cpu}\nworker: {command: w}\n"
      "nodes:\n  - {host: localhost, gpus: []}\n  - {host: b, address: 10.0.0.2, workers: 3}\n",
      "m.yaml", Options("/x", "/y"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->nodes[0].workers, 1);
  EXPECT_THAT(m->nodes[1].gpus, IsEmpty());
  EXPECT_EQ(m->nodes[1].workers, 3);
  EXPECT_EQ(m->nodes[1].first_rank, 1);
  EXPECT_EQ(m->world_size, 4);
  EXPECT_EQ(m->num_gpus, 0);
}

TEST(ManifestDefaults, TwoAgentsOnOneHostWithTheirOwnAddressesAndGpus) {
  // Several agents on one machine (network namespaces in the launcher's tests).
  absl::StatusOr<Manifest> m = ParseManifest(
      "job: {name: ns}\nworker: {command: w}\n"
      "nodes:\n  - {name: a, host: localhost, address: 10.99.0.1, gpus: [0, 1]}\n"
      "  - {name: b, host: localhost, address: 10.99.0.2, gpus: [2, 3], remote: true}\n",
      "m.yaml", Options("/x", "/y"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->nodes[0].remote);
  EXPECT_TRUE(m->nodes[1].remote);  // written, so the host's locality does not decide
  EXPECT_EQ(m->nodes[1].first_rank, 2);
  // A remote node moves the default listen address off loopback.
  EXPECT_EQ(m->coordinator.listen.ToString(), "0.0.0.0:0");
  EXPECT_EQ(m->coordinator.advertise, "head");
}

TEST(ManifestDefaults, AHostThatCannotBeANameGivesAPositionalName) {
  absl::StatusOr<Manifest> m = ParseManifest(
      "job: {name: v6}\nworker: {command: w}\n"
      "nodes: [{host: localhost, gpus: 1}, {host: 'fd00::5', gpus: 1}]\n",
      "m.yaml", Options("/x", "/y"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->nodes[0].name, "localhost");
  EXPECT_EQ(m->nodes[1].name, "node1");
  EXPECT_EQ(m->nodes[1].address, "fd00::5");
}

TEST(ManifestDefaults, ElasticWithoutBoundsSpansOneToAllNodes) {
  absl::StatusOr<Manifest> m = ParseManifest(
      "job: {name: e}\nworker: {command: w}\nrestart: {elastic: {}}\n"
      "nodes: [{host: a, gpus: 1}, {host: b, gpus: 1}, {host: c, gpus: 1}]\n",
      "m.yaml", Options("/x", "/y"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->restart.elastic.enabled);
  EXPECT_EQ(m->restart.elastic.min_nodes, 1);
  EXPECT_EQ(m->restart.elastic.max_nodes, 3);
  EXPECT_EQ(m->restart.elastic.settle, absl::Seconds(10));
}

TEST(ManifestDefaults, ZeroBackoffAndAListenAddressThatIsAdvertised) {
  absl::StatusOr<Manifest> m = ParseManifest(
      "job: {name: z}\nworker: {command: w}\nnodes: [{host: a, gpus: 1}]\n"
      "restart: {backoff: 0s}\ncoordinator: {listen: '10.0.0.9:29400'}\n",
      "m.yaml", Options("/x", "/y"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->restart.backoff, absl::ZeroDuration());
  EXPECT_EQ(m->coordinator.advertise, "10.0.0.9");
  EXPECT_EQ(m->coordinator.listen.port, 29400);
}

TEST(ManifestDefaults, RunningCoordinatorWithTokenAndIpv6Address) {
  absl::StatusOr<Manifest> m = ParseManifest(
      "job: {name: r}\nworker: {command: w}\nnodes: [{host: localhost, gpus: 1}]\n"
      "coordinator: {address: '[fd00::5]:29400'}\nauth: {token: s3cret}\n",
      "m.yaml", Options("/x", "/y"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->coordinator.start_here);
  EXPECT_EQ(m->coordinator.address.host, "fd00::5");
  EXPECT_EQ(m->coordinator.address.ToString(), "[fd00::5]:29400");
  EXPECT_EQ(m->auth.token, "s3cret");
  EXPECT_FALSE(m->auth.generate);
}

TEST(ManifestPaths, RelativePathsResolveAgainstTheManifestsDirectory) {
  const std::string dir = ::testing::TempDir() + "manifest_paths_" + std::to_string(getpid());
  std::filesystem::create_directories(dir + "/jobs/secrets");
  std::ofstream(dir + "/jobs/secrets/t") << "tok\n";
  chmod((dir + "/jobs/secrets/t").c_str(), 0600);
  std::ofstream(dir + "/jobs/m.yaml")
      << "job: {name: p, run_dir: ../runs/p/}\n"
         "worker: {command: w, cwd: ./work/../src}\n"
         "checkpoint: {dir: /abs/ckpt}\n"
         "auth: {token_file: secrets/t}\n"
         "nodes: [{host: localhost, gpus: 1}]\n";
  ManifestOptions o;
  o.is_local = [](std::string_view host) { return host == "localhost"; };
  absl::StatusOr<Manifest> m = LoadManifest(dir + "/jobs/m.yaml", o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->base_dir, dir + "/jobs");
  EXPECT_EQ(m->run_dir, dir + "/runs/p");
  EXPECT_EQ(m->worker.cwd, dir + "/jobs/src");
  EXPECT_EQ(m->checkpoint.dir, "/abs/ckpt");
  EXPECT_EQ(m->auth.token_file, dir + "/jobs/secrets/t");
  EXPECT_EQ(m->auth.token, "tok");  // the trailing newline is not part of it
  EXPECT_THAT(m->warnings, IsEmpty());  // 0600: nothing to say

  // The same file, readable by everyone: loaded, with a warning that says what to do.
  chmod((dir + "/jobs/secrets/t").c_str(), 0644);
  m = LoadManifest(dir + "/jobs/m.yaml", o);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->warnings.size(), 1u);
  EXPECT_EQ(m->warnings[0], dir + "/jobs/m.yaml:4:20: auth.token_file: " + dir +
                                "/jobs/secrets/t can be read by other users (mode 0644); chmod 600 it");
  std::filesystem::remove_all(dir);
}

TEST(ManifestPaths, ARelativeManifestPathResolvesAgainstTheWorkingDirectory) {
  const std::string dir = ::testing::TempDir() + "manifest_rel_" + std::to_string(getpid());
  std::filesystem::create_directories(dir + "/sub");
  std::ofstream(dir + "/sub/m.yaml")
      << "job: {name: q, run_dir: out}\nworker: {command: w}\nnodes: [{host: localhost, gpus: 1}]\n";
  const std::filesystem::path before = std::filesystem::current_path();
  std::filesystem::current_path(dir);
  absl::StatusOr<Manifest> m = LoadManifest("sub/m.yaml");
  std::filesystem::current_path(before);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->source, "sub/m.yaml");
  EXPECT_EQ(m->run_dir, dir + "/sub/out");
  EXPECT_EQ(m->worker.cwd, dir);  // not written: where colossus-launch runs
  std::filesystem::remove_all(dir);
}

// ---- this machine -----------------------------------------------------------------------

TEST(ThisMachine, LoopbackAndOwnHostnameAreLocalOthersAreNot) {
  EXPECT_TRUE(IsThisMachine("localhost"));
  EXPECT_TRUE(IsThisMachine("LOCALHOST"));
  EXPECT_TRUE(IsThisMachine("127.0.0.1"));
  EXPECT_TRUE(IsThisMachine("127.0.1.1"));
  EXPECT_TRUE(IsThisMachine("::1"));
  char name[256] = {};
  ASSERT_EQ(gethostname(name, sizeof(name) - 1), 0);
  EXPECT_TRUE(IsThisMachine(name));
  EXPECT_FALSE(IsThisMachine("no-such-host.invalid"));
  EXPECT_FALSE(IsThisMachine("192.0.2.77"));  // TEST-NET-1: never a real interface
}

}  // namespace
}  // namespace colossus::launcher
