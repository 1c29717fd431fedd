// The shipped examples (examples/manifests/) load and give the layout their comments
// promise; the --dry-run summary.
#include <sys/stat.h>

#include <string>

#include "colossus/launcher/manifest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const std::string kExamples = std::string(COLOSSUS_SOURCE_DIR) + "/examples/manifests";

// Deterministic "this machine" and working directory, whatever host runs the test.
ManifestOptions Options() {
  ManifestOptions o;
  o.working_dir = "/home/me/colossus";
  o.is_local = [](std::string_view host) { return host == "localhost"; };
  o.local_hostname = "launcher-host";
  return o;
}

TEST(ManifestExamples, LaptopRunsTwoCpuWorkersWithEveryDefault) {
  absl::StatusOr<Manifest> m = LoadManifest(kExamples + "/laptop.yaml", Options());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "demo");
  ASSERT_EQ(m->nodes.size(), 1u);
  const NodeSpec& n = m->nodes[0];
  EXPECT_EQ(n.name, "localhost");
  EXPECT_EQ(n.address, "localhost");
  EXPECT_THAT(n.gpus, IsEmpty());
  EXPECT_EQ(n.workers, 2);
  EXPECT_FALSE(n.remote);
  EXPECT_EQ(n.first_rank, 0);
  EXPECT_EQ(n.source, kExamples + "/laptop.yaml:16:5");
  EXPECT_EQ(m->world_size, 2);
  EXPECT_EQ(m->num_gpus, 0);
  EXPECT_EQ(m->parallelism.tensor_parallel, 1);
  EXPECT_EQ(m->parallelism.data_parallel, 2);
  EXPECT_EQ(m->parallelism.backend, Backend::kAuto);
  EXPECT_THAT(m->worker.command, ElementsAre("build/release/examples/train_gpt", "--config",
                                             "examples/configs/demo.yaml"));
  EXPECT_EQ(m->worker.log, LogMode::kAll);
  // Defaults: paths the file does not write are the launch directory's.
  EXPECT_EQ(m->run_dir, "/home/me/colossus/runs/demo");
  EXPECT_EQ(m->checkpoint.dir, "/home/me/colossus/runs/demo/checkpoints");
  EXPECT_EQ(m->worker.cwd, "/home/me/colossus");
  EXPECT_EQ(m->base_dir, kExamples);
  // Nothing remote: the coordinator stays on loopback, on a free port.
  EXPECT_TRUE(m->coordinator.start_here);
  EXPECT_EQ(m->coordinator.listen.ToString(), "127.0.0.1:0");
  EXPECT_EQ(m->coordinator.advertise, "127.0.0.1");
  EXPECT_FALSE(m->coordinator.tls.enabled);
  EXPECT_FALSE(m->any_remote);
  EXPECT_TRUE(m->auth.generate);
  EXPECT_EQ(m->restart.max_restarts, 3);
  EXPECT_EQ(m->restart.elastic.min_nodes, 1);
  EXPECT_EQ(m->restart.elastic.max_nodes, 1);
  EXPECT_THAT(m->warnings, IsEmpty());
}

TEST(ManifestExamples, Node8HasFourReplicasOfTwoGpus) {
  absl::StatusOr<Manifest> m = LoadManifest(kExamples + "/node8.yaml", Options());
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->nodes.size(), 1u);
  const NodeSpec& n = m->nodes[0];
  EXPECT_EQ(n.name, "node8");
  EXPECT_THAT(n.gpus, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7));
  EXPECT_EQ(n.workers, 8);
  EXPECT_EQ(n.env.at("NCCL_DEBUG"), "WARN");
  EXPECT_EQ(m->world_size, 8);
  EXPECT_EQ(m->num_gpus, 8);
  EXPECT_EQ(m->parallelism.tensor_parallel, 2);
  EXPECT_EQ(m->parallelism.data_parallel, 4);
  EXPECT_EQ(m->parallelism.backend, Backend::kNccl);
  EXPECT_EQ(m->run_dir, "/scratch/runs/gpt2-124m-node8");
  EXPECT_EQ(m->checkpoint.dir, "/scratch/runs/gpt2-124m-node8/checkpoints");
  EXPECT_EQ(m->checkpoint.interval_steps, 500);
  EXPECT_EQ(m->checkpoint.keep, 2);
  EXPECT_EQ(m->worker.env.at("OMP_NUM_THREADS"), "4");
  EXPECT_EQ(m->worker.log, LogMode::kRank0);
  EXPECT_EQ(m->worker.command.size(), 7u);
  EXPECT_EQ(m->restart.max_restarts, 5);
  EXPECT_EQ(m->restart.backoff, absl::Seconds(10));
  EXPECT_EQ(m->health.hang_timeout, absl::Minutes(5));
}

TEST(ManifestExamples, ClusterLayoutRanksTokenAndSsh) {
  absl::StatusOr<Manifest> m = LoadManifest(kExamples + "/cluster.yaml", Options());
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->nodes.size(), 4u);
  EXPECT_EQ(m->world_size, 30);
  EXPECT_EQ(m->num_gpus, 30);
  EXPECT_EQ(m->parallelism.tensor_parallel, 2);
  EXPECT_EQ(m->parallelism.data_parallel, 15);
  const int64_t first_ranks[] = {0, 8, 16, 24};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(m->nodes[i].node_rank, i);
    EXPECT_EQ(m->nodes[i].first_rank, first_ranks[i]) << i;
    EXPECT_TRUE(m->nodes[i].remote) << i;
  }
  EXPECT_EQ(m->nodes[0].name, "a");
  EXPECT_EQ(m->nodes[0].address, "gpu-a.cluster.internal");
  EXPECT_EQ(m->nodes[2].address, "10.1.0.13");
  EXPECT_THAT(m->nodes[3].gpus, ElementsAre(0, 1, 2, 3, 6, 7));
  EXPECT_EQ(m->nodes[3].workers, 6);
  EXPECT_EQ(m->nodes[3].env.at("NCCL_IB_HCA"), "mlx5_0,mlx5_1");
  EXPECT_TRUE(m->any_remote);
  EXPECT_EQ(m->coordinator.listen.ToString(), "0.0.0.0:29400");
  EXPECT_EQ(m->coordinator.advertise, "head.cluster.internal");
  EXPECT_TRUE(m->restart.elastic.enabled);
  EXPECT_EQ(m->restart.elastic.min_nodes, 3);
  EXPECT_EQ(m->restart.elastic.max_nodes, 4);
  EXPECT_EQ(m->restart.elastic.settle, absl::Seconds(20));
  EXPECT_EQ(m->health.heartbeat_interval, absl::Seconds(2));
  EXPECT_EQ(m->health.node_timeout, absl::Minutes(1));
  EXPECT_EQ(m->health.join_timeout, absl::Minutes(10));
  EXPECT_EQ(m->worker.cwd, "/shared/work");
  EXPECT_EQ(m->checkpoint.dir, "/shared/checkpoints/gpt2-350m");
  // The token file resolves against the manifest's directory, not the working one.
  EXPECT_EQ(m->auth.token_file, kExamples + "/cluster.token");
  EXPECT_EQ(m->auth.token, "example-token-replace-me-0f3a9c");
  EXPECT_FALSE(m->auth.generate);
  EXPECT_THAT(m->ssh.command, ElementsAre("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"));
  EXPECT_EQ(m->ssh.user, "train");
  EXPECT_EQ(m->ssh.port, 22);
  // git checks the token out 0644; the loader says so (and is quiet once it is 0600).
  struct stat st = {};
  ASSERT_EQ(stat(m->auth.token_file.c_str(), &st), 0);
  if ((st.st_mode & 077) != 0) {
    ASSERT_EQ(m->warnings.size(), 1u);
    EXPECT_THAT(m->warnings[0], HasSubstr("cluster.yaml:66:15: auth.token_file: "));
    EXPECT_THAT(m->warnings[0], HasSubstr("chmod 600"));
  } else {
    EXPECT_THAT(m->warnings, IsEmpty());
  }
}

TEST(ManifestExamples, HostsTxtIsADeepSpeedHostfile) {
  absl::StatusOr<std::vector<HostfileEntry>> hosts = LoadHostfile(kExamples + "/hosts.txt");
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 4u);
  EXPECT_EQ((*hosts)[0].host, "gpu-a.cluster.internal");
  EXPECT_EQ((*hosts)[0].slots, 8);
  EXPECT_EQ((*hosts)[0].line, 3);
  EXPECT_EQ((*hosts)[2].line, 6);
  EXPECT_EQ((*hosts)[3].slots, 4);
}

TEST(ManifestExamples, AManifestNamingHostsTxtGetsItsNodes) {
  // Written in the examples directory's name so that `hostfile: hosts.txt` resolves there.
  const std::string yaml =
      "job: {name: from-hostfile}\n"
      "hostfile: hosts.txt\n"
      "worker: {command: train}\n"
      "parallelism: {tensor_parallel: 4}\n";
  absl::StatusOr<Manifest> m = ParseManifest(yaml, kExamples + "/inline.yaml", Options());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->hostfile, kExamples + "/hosts.txt");
  ASSERT_EQ(m->nodes.size(), 4u);
  EXPECT_EQ(m->nodes[1].name, "gpu-b.cluster.internal");
  EXPECT_EQ(m->nodes[1].host, "gpu-b.cluster.internal");
  EXPECT_EQ(m->nodes[1].first_rank, 8);
  EXPECT_EQ(m->nodes[3].first_rank, 24);
  EXPECT_THAT(m->nodes[3].gpus, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(m->nodes[3].source, kExamples + "/hosts.txt:7");
  EXPECT_TRUE(m->nodes[3].remote);
  EXPECT_EQ(m->world_size, 28);
  EXPECT_EQ(m->parallelism.data_parallel, 7);
  // Remote nodes and no listen address: all interfaces, and the nodes dial this host.
  EXPECT_EQ(m->coordinator.listen.ToString(), "0.0.0.0:0");
  EXPECT_EQ(m->coordinator.advertise, "launcher-host");
}

TEST(ManifestDescribe, LaptopSummary) {
  absl::StatusOr<Manifest> m = LoadManifest(kExamples + "/laptop.yaml", Options());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(DescribeManifest(*m),
            "job demo: 1 node, CPU only, world size 2 = tensor 1 x data 2, backend auto\n"
            "coordinator: started here, listening on 127.0.0.1:<free port>, agents dial "
            "127.0.0.1:<that port>\n"
            "nodes:\n"
            "  0    localhost (localhost, local): ranks 0-1, 2 CPU workers\n"
            "worker: build/release/examples/train_gpt --config examples/configs/demo.yaml "
            "(in /home/me/colossus; output: all)\n"
            "run dir: /home/me/colossus/runs/demo; checkpoints every 1000 steps in "
            "/home/me/colossus/runs/demo/checkpoints, keep 3\n"
            "restarts: up to 3, backoff 5s, not elastic (every node, every time)\n"
            "health: heartbeat 1s, node timeout 30s, hang timeout 10m, join timeout 5m\n"
            "auth: a token generated for this job\n");
}

TEST(ManifestDescribe, ClusterSummaryNamesNodesGpusAndCoordinator) {
  absl::StatusOr<Manifest> m = LoadManifest(kExamples + "/cluster.yaml", Options());
  ASSERT_TRUE(m.ok()) << m.status();
  const std::string text = DescribeManifest(*m);
  EXPECT_THAT(text, HasSubstr("job gpt2-350m-cluster: 4 nodes, 30 GPUs, world size 30 = "
                              "tensor 2 x data 15, backend nccl\n"));
  EXPECT_THAT(text, HasSubstr("coordinator: started here, listening on 0.0.0.0:29400, agents "
                              "dial head.cluster.internal:29400\n"));
  EXPECT_THAT(text, HasSubstr("  2    c (gpu-c.cluster.internal, address 10.1.0.13, over ssh): "
                              "ranks 16-23, GPUs 0-7\n"));
  EXPECT_THAT(text, HasSubstr("  3    d (gpu-d.cluster.internal, over ssh): ranks 24-29, "
                              "GPUs 0,1,2,3,6,7\n"));
  EXPECT_THAT(text, HasSubstr("elastic 3-4 nodes (settle 20s)"));
}

TEST(ManifestDescribe, LongNodeListsAreCut) {
  std::string yaml = "job: {name: big}\nworker: {command: train}\nnodes:\n";
  for (int i = 0; i < 40; ++i) yaml += "  - {host: n" + std::to_string(i) + ", gpus: 4}\n";
  absl::StatusOr<Manifest> m = ParseManifest(yaml, "big.yaml", Options());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->world_size, 160);
  EXPECT_EQ(m->nodes[39].first_rank, 156);
  const std::string text = DescribeManifest(*m);
  EXPECT_THAT(text, HasSubstr("  6    n6 (n6, over ssh): ranks 24-27, GPUs 0-3\n  ... 32 more\n"
                              "  39   n39 (n39, over ssh): ranks 156-159, GPUs 0-3\n"));
  EXPECT_THAT(text, Not(HasSubstr("n7 ")));
}

}  // namespace
}  // namespace colossus::launcher
