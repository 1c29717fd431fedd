// train_gpt: GPT pretraining from a YAML config and/or flags, in one process or as one
// data-parallel rank of many.
//
//   train_gpt --config examples/configs/demo.yaml
//   train_gpt --config my.yaml --set training.steps=50 --set runtime.threads=2
//   train_gpt --preset tiny --train 'data/train_*.bin' --val 'data/val_*.bin' --steps 20
//
// Distributed: started with the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT; see runtime/include/colossus/parallel/dist_env.h), every process trains
// its slice of each global batch and rank 0 writes the outputs. On one machine:
//
//   examples/train_gpt/launch_local.sh -n 2 -- train_gpt --config my.yaml --threads 1
//       --global-batch 32 [--zero]          (one command line)
//   launch_local.sh -n 4 -- train_gpt ... --tp 2   (2-way tensor parallel x 2-way data parallel)
//
// Checkpoints: --checkpoint-dir DIR [--checkpoint-every N] [--keep K] (or the YAML's
// checkpoint section). Running the same command again resumes from the newest committed
// step. Under colossus-launch (COLOSSUS_COORDINATOR set) the worker rendezvouses through
// the coordinator's store, the coordinator commits the checkpoints, and the rank's step
// is written to COLOSSUS_STATUS_FILE for the agent's hang detection (launcher_link.h);
// the checkpoint directory defaults to $COLOSSUS_RUN_DIR/checkpoints there.
//
// Exit codes: 0 done, 2 bad usage or config, 1 a runtime failure (data, device, I/O,
// divergence); the message on stderr names the file, field or step.
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "colossus/trainer.h"
#include "launcher_link.h"

int main(int argc, char** argv) {
  CLI::App app{"Pretrain a GPT with the Colossus runtime (one process, or one data-parallel rank)."};
  std::string config_path, preset, train, val, device, out;
  std::vector<std::string> overrides;
  int64_t steps = -1;
  int threads = -1;
  int64_t global_batch = -1;
  float bucket_mb = -1;
  int tp = 0;
  std::string checkpoint_dir;
  int64_t checkpoint_every = -1;
  int keep = 0;
  bool zero = false, no_overlap = false;
  app.add_option("--config", config_path, "YAML training config (see runtime/include/colossus/train_config.h)");
  app.add_option("--preset", preset, "model preset: gpt2-124m, gpt2-350m, demo, tiny, bench");
  app.add_option("--train", train, "glob of training shards (.bin)");
  app.add_option("--val", val, "glob of validation shards (.bin)");
  app.add_option("--steps", steps, "optimizer steps");
  app.add_option("--device", device, "auto, cpu or cuda");
  app.add_option("--threads", threads, "CPU threads (0 = all)");
  app.add_option("--out", out, "output directory (metrics.jsonl, model.safetensors)");
  app.add_option("--global-batch", global_batch,
                 "samples per optimizer step over all ranks (kept when the rank count changes)");
  app.add_flag("--zero", zero, "ZeRO-1: shard the optimizer state over the data-parallel ranks");
  app.add_option("--bucket-mb", bucket_mb, "gradient all-reduce bucket size in MiB (default 25)");
  app.add_flag("--no-overlap", no_overlap, "all-reduce the gradients after backward, not during it");
  app.add_option("--tp", tp, "tensor-parallel size: the ranks form a tp x dp layout (default 1)");
  app.add_option("--checkpoint-dir", checkpoint_dir,
                 "sharded checkpoints here; resumes from the newest committed step in it");
  app.add_option("--checkpoint-every", checkpoint_every, "save every N steps (default 1000)");
  app.add_option("--keep", keep, "committed checkpoints kept (default 3)");
  app.add_option("--set", overrides, "override any config key: section.key=value (repeatable)");
  CLI11_PARSE(app, argc, argv);

  colossus::TrainConfig config;
  if (!config_path.empty()) {
    auto loaded = colossus::LoadTrainConfig(config_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "train_gpt: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    config = *loaded;
  }
  // Flags override the file; --set overrides everything.
  std::vector<std::string> sets;
  if (!preset.empty()) sets.push_back("model.preset=" + preset);
  if (!train.empty()) sets.push_back("data.train=" + train);
  if (!val.empty()) sets.push_back("data.val=" + val);
  if (steps >= 0) sets.push_back("training.steps=" + std::to_string(steps));
  if (!device.empty()) sets.push_back("runtime.device=" + device);
  if (threads >= 0) sets.push_back("runtime.threads=" + std::to_string(threads));
  if (!out.empty()) sets.push_back("output.dir=" + out);
  if (global_batch >= 0) sets.push_back("training.global_batch=" + std::to_string(global_batch));
  if (zero) sets.push_back("parallel.zero=1");
  if (bucket_mb > 0) sets.push_back("parallel.bucket_mb=" + std::to_string(bucket_mb));
  if (no_overlap) sets.push_back("parallel.overlap=0");
  if (tp > 0) sets.push_back("parallel.tensor_parallel=" + std::to_string(tp));
  if (checkpoint_dir.empty() && config.checkpoint_dir.empty()) {
    checkpoint_dir = colossus::examples::DefaultCheckpointDir();
  }
  if (!checkpoint_dir.empty()) sets.push_back("checkpoint.dir=" + checkpoint_dir);
  if (checkpoint_every >= 0) {
    sets.push_back("checkpoint.interval_steps=" + std::to_string(checkpoint_every));
  }
  if (keep > 0) sets.push_back("checkpoint.keep=" + std::to_string(keep));
  sets.insert(sets.end(), overrides.begin(), overrides.end());
  for (const std::string& s : sets) {
    if (absl::Status st = colossus::ApplyOverride(&config, s); !st.ok()) {
      std::fprintf(stderr, "train_gpt: %s\n", std::string(st.message()).c_str());
      return 2;
    }
  }
  if (absl::Status st = config.Validate(); !st.ok()) {
    std::fprintf(stderr, "train_gpt: %s\n", std::string(st.message()).c_str());
    return 2;
  }

  // Under colossus-launch: the coordinator's store, committer and status file.
  auto link = colossus::examples::LauncherLink::FromEnvironment();
  if (!link.ok()) {
    std::fprintf(stderr, "train_gpt: %s\n", std::string(link.status().message()).c_str());
    return 1;
  }
  // Joins the data-parallel group when the environment names one.
  auto trainer = colossus::Trainer::Create(config);
  if (!trainer.ok()) {
    std::fprintf(stderr, "train_gpt: %s\n", std::string(trainer.status().message()).c_str());
    return 1;
  }
  if (*link != nullptr) (*trainer)->set_hooks((*link)->Hooks());
  const int rank = (*trainer)->rank();
  auto summary = (*trainer)->Run();
  if (!summary.ok()) {
    std::fprintf(stderr, "train_gpt: rank %d: %s\n", rank,
                 std::string(summary.status().message()).c_str());
    return 1;
  }
  if (rank != 0) return 0;  // rank 0 reports for the job
  const colossus::TrainSummary& s = *summary;
  std::printf("\n=== done: %lld steps in %.1f s (%.0f tokens/s over %d rank%s)\n",
              static_cast<long long>(s.steps), s.seconds, s.tokens_per_s, s.ranks,
              s.ranks == 1 ? "" : "s");
  if (s.resumed_from >= 0) {
    std::printf("resumed:    from step %lld (steps %lld..%lld run here)\n",
                static_cast<long long>(s.resumed_from), static_cast<long long>(s.first_step),
                static_cast<long long>(s.first_step + s.steps));
  }
  if (s.checkpoints_saved > 0) {
    std::printf("checkpoints: %d saved, longest stall %.3f s\n", s.checkpoints_saved,
                s.max_checkpoint_stall_s);
  }
  std::printf("train loss: %.4f -> %.4f\n", s.first_loss, s.final_loss);
  if (s.val_loss >= 0) {
    std::printf("val loss:   %.4f   unigram baseline: %.4f   (%.1f%% lower)\n", s.val_loss,
                s.unigram_val_loss, 100.0 * (1.0 - s.val_loss / s.unigram_val_loss));
  }
  std::printf("weights:    %s\n", s.weights_path.c_str());
  std::printf("--- sample ---\n%s\n--------------\n", s.sample.c_str());
  return 0;
}
