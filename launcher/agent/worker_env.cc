#include "colossus/launcher/worker_env.h"

namespace colossus::launcher {

std::vector<std::pair<std::string, std::string>> WorkerEnvironment(const WorkerEnvInputs& in) {
  using std::to_string;
  std::vector<std::pair<std::string, std::string>> env = {
      {"RANK", to_string(in.rank)},
      {"WORLD_SIZE", to_string(in.world_size)},
      {"LOCAL_RANK", to_string(in.local_rank)},
      {"LOCAL_WORLD_SIZE", to_string(in.local_world_size)},
      {"GROUP_RANK", to_string(in.group_rank)},
      {"GROUP_WORLD_SIZE", to_string(in.num_nodes)},
      {"ROLE_RANK", to_string(in.rank)},
      {"ROLE_WORLD_SIZE", to_string(in.world_size)},
      {"MASTER_ADDR", in.master_addr},
      {"MASTER_PORT", to_string(in.master_port)},
      {"TORCHELASTIC_RESTART_COUNT", to_string(in.restarts)},
      {"TORCHELASTIC_MAX_RESTARTS", to_string(in.max_restarts)},
      {"TORCHELASTIC_RUN_ID", in.job_id},
      {"COLOSSUS_COORDINATOR", in.coordinator},
      {"COLOSSUS_JOB_ID", in.job_id},
      {"COLOSSUS_GENERATION", to_string(in.generation)},
      {"COLOSSUS_TOKEN_FILE", in.token_file},
      {"COLOSSUS_RUN_DIR", in.run_dir},
      {"COLOSSUS_NODE_ID", in.node_id},
      {"COLOSSUS_STATUS_FILE", in.status_file},
  };
  if (!in.store.empty()) env.emplace_back("COLOSSUS_STORE", in.store);
  if (in.gpu_index >= 0) env.emplace_back("CUDA_VISIBLE_DEVICES", to_string(in.gpu_index));
  if (in.local_world_size > 1 && !in.omp_threads_set) env.emplace_back("OMP_NUM_THREADS", "1");
  return env;
}

}  // namespace colossus::launcher
