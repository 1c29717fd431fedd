// A worker for colossus-launch's end-to-end tests. It checks the environment an agent
// gives it (exit 3 with the variable named when something is missing or inconsistent),
// records it under $COLOSSUS_RUN_DIR/workers/, reports steps through the status file,
// and then behaves as the test asks:
//   --steps N            report steps 0..N-1, 20 ms apart (default 3)
//   --hold-generation G  in generation G, run until killed
//   --hold-file F        run until file F exists
//   --fail-code C        write three lines to stderr and exit C
//   --store-check        rendezvous through the coordinator's store (worker_store.h):
//                        set "rank<R>", wait for every rank's key, record what it read
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "colossus/launcher/status_file.h"
#include "colossus/launcher/worker_store.h"

extern char** environ;

namespace {

int Bad(const std::string& what) {
  std::fprintf(stderr, "test_worker: bad environment: %s\n", what.c_str());
  return 3;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 3, fail_code = 0;
  long hold_generation = -1;
  std::string hold_file;
  bool store_check = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--store-check") store_check = true;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--store-check") {
      --i;
      continue;
    }
    if (flag == "--steps") steps = std::atoi(argv[i + 1]);
    if (flag == "--hold-generation") hold_generation = std::atol(argv[i + 1]);
    if (flag == "--hold-file") hold_file = argv[i + 1];
    if (flag == "--fail-code") fail_code = std::atoi(argv[i + 1]);
  }
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                        "MASTER_ADDR", "MASTER_PORT", "COLOSSUS_COORDINATOR", "COLOSSUS_JOB_ID",
                        "COLOSSUS_GENERATION", "COLOSSUS_TOKEN_FILE", "COLOSSUS_RUN_DIR",
                        "COLOSSUS_STATUS_FILE"}) {
    if (Env(v).empty()) return Bad(std::string(v) + " is not set");
  }
  const int rank = std::atoi(Env("RANK").c_str());
  const int world = std::atoi(Env("WORLD_SIZE").c_str());
  const int local = std::atoi(Env("LOCAL_RANK").c_str());
  const int local_world = std::atoi(Env("LOCAL_WORLD_SIZE").c_str());
  if (rank < 0 || rank >= world) return Bad("RANK=" + Env("RANK") + " outside WORLD_SIZE");
  if (local < 0 || local >= local_world) return Bad("LOCAL_RANK outside LOCAL_WORLD_SIZE");
  const int port = std::atoi(Env("MASTER_PORT").c_str());
  if (port <= 0 || port > 65535) return Bad("MASTER_PORT=" + Env("MASTER_PORT"));
  std::ifstream token_in(Env("COLOSSUS_TOKEN_FILE"));
  std::string token;
  if (!std::getline(token_in, token) || token.empty()) return Bad("COLOSSUS_TOKEN_FILE unreadable");

  const std::string gen = Env("COLOSSUS_GENERATION");
  const std::string dir = Env("COLOSSUS_RUN_DIR") + "/workers";
  std::filesystem::create_directories(dir);
  const std::string base = dir + "/gen" + gen + ".rank" + Env("RANK");
  {
    std::ofstream env(base + ".env.tmp");
    for (char** e = environ; *e != nullptr; ++e) env << *e << "\n";
    env << "TEST_TOKEN=" << token << "\n";
  }
  std::filesystem::rename(base + ".env.tmp", base + ".env");
  {
    std::ofstream pid(base + ".pid.tmp");
    pid << getpid() << " " << getppid() << "\n";
  }
  std::filesystem::rename(base + ".pid.tmp", base + ".pid");
  std::printf("worker rank %d of %d (generation %s) up\n", rank, world, gen.c_str());
  std::fflush(stdout);

  if (store_check) {
    auto store = colossus::launcher::CoordinatorStoreFromEnvironment();
    if (!store.ok()) return Bad(std::string(store.status().message()));
    if (absl::Status s = (*store)->Set("rank" + Env("RANK"), Env("RANK")); !s.ok()) {
      return Bad(std::string(s.message()));
    }
    std::vector<std::string> keys;
    for (int r = 0; r < world; ++r) keys.push_back("rank" + std::to_string(r));
    if (absl::Status s = (*store)->Wait(keys, absl::Seconds(30)); !s.ok()) return Bad(std::string(s.message()));
    std::ofstream seen(base + ".store");
    for (const std::string& k : keys) seen << *(*store)->Get(k) << " ";
  }
  const std::string status = Env("COLOSSUS_STATUS_FILE");
  for (int s = 0; s < steps; ++s) {
    colossus::launcher::WriteRankStatus(status, {.step = s, .total_steps = steps, .loss = 5.0f / (s + 1), .tokens_per_s = 100.0})
        .IgnoreError();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (fail_code != 0) {
    std::fprintf(stderr, "loading shard 7\nloss is nan at step %d\nrank %d: giving up\n", steps, rank);
    return fail_code;
  }
  if (hold_generation >= 0 && std::atol(gen.c_str()) == hold_generation) {
    for (;;) pause();
  }
  if (!hold_file.empty()) {
    while (!std::filesystem::exists(hold_file)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}
