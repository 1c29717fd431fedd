#include "colossus/train_config.h"

#include <functional>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "yaml-cpp/yaml.h"

namespace colossus {
namespace {

using Setter = std::function<absl::Status(TrainConfig&, const std::string&)>;

template <typename T>
absl::Status ParseNumber(const std::string& key, const std::string& text, T* out) {
  bool ok = false;
  if constexpr (std::is_same_v<T, float>) {
    ok = absl::SimpleAtof(text, out);
  } else if constexpr (std::is_same_v<T, int>) {
    ok = absl::SimpleAtoi(text, out);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    ok = absl::SimpleAtoi(text, out);
  } else if constexpr (std::is_same_v<T, uint64_t>) {
    ok = absl::SimpleAtoi(text, out);
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: '%s' is not a valid %s", key, text,
                        std::is_same_v<T, float> ? "number" : "integer"));
  }
  return absl::OkStatus();
}

// One entry per configurable key: YAML files and command-line overrides share it, so
// the two can never disagree about names or parsing.
const std::map<std::string, Setter>& Setters() {
  static const auto* table = [] {
    auto* t = new std::map<std::string, Setter>;
    auto num = [t](const std::string& key, auto member) {
      (*t)[key] = [key, member](TrainConfig& c, const std::string& v) {
        return ParseNumber(key, v, &member(c));
      };
    };
    auto str = [t](const std::string& key, auto member) {
      (*t)[key] = [member](TrainConfig& c, const std::string& v) {
        member(c) = v;
        return absl::OkStatus();
      };
    };
    (*t)["model.preset"] = [](TrainConfig& c, const std::string& v) -> absl::Status {
      auto preset = GPTPreset(v);
      if (!preset.ok()) return absl::InvalidArgumentError("model.preset: " + std::string(preset.status().message()));
      c.model = *preset;
      return absl::OkStatus();
    };
    num("model.n_layer", [](TrainConfig& c) -> int& { return c.model.n_layer; });
    num("model.n_head", [](TrainConfig& c) -> int& { return c.model.n_head; });
    num("model.n_embd", [](TrainConfig& c) -> int& { return c.model.n_embd; });
    num("model.block_size", [](TrainConfig& c) -> int& { return c.model.block_size; });
    num("model.vocab_size", [](TrainConfig& c) -> int& { return c.model.vocab_size; });
    num("model.padded_vocab_size", [](TrainConfig& c) -> int& { return c.model.padded_vocab_size; });
    str("data.train", [](TrainConfig& c) -> std::string& { return c.train_data; });
    str("data.val", [](TrainConfig& c) -> std::string& { return c.val_data; });
    str("data.tokenizer", [](TrainConfig& c) -> std::string& { return c.tokenizer; });
    num("training.batch_size", [](TrainConfig& c) -> int& { return c.batch_size; });
    num("training.seq_len", [](TrainConfig& c) -> int& { return c.seq_len; });
    num("training.grad_accum", [](TrainConfig& c) -> int& { return c.grad_accum; });
    num("training.global_batch", [](TrainConfig& c) -> int64_t& { return c.global_batch; });
    num("training.steps", [](TrainConfig& c) -> int64_t& { return c.steps; });
    num("training.seed", [](TrainConfig& c) -> uint64_t& { return c.seed; });
    num("optimizer.lr", [](TrainConfig& c) -> float& { return c.optimizer.lr; });
    num("optimizer.min_lr", [](TrainConfig& c) -> float& { return c.optimizer.min_lr; });
    num("optimizer.warmup_steps", [](TrainConfig& c) -> int64_t& { return c.optimizer.warmup_steps; });
    num("optimizer.total_steps", [](TrainConfig& c) -> int64_t& { return c.optimizer.total_steps; });
    num("optimizer.beta1", [](TrainConfig& c) -> float& { return c.optimizer.beta1; });
    num("optimizer.beta2", [](TrainConfig& c) -> float& { return c.optimizer.beta2; });
    num("optimizer.eps", [](TrainConfig& c) -> float& { return c.optimizer.eps; });
    num("optimizer.weight_decay", [](TrainConfig& c) -> float& { return c.optimizer.weight_decay; });
    num("optimizer.grad_clip", [](TrainConfig& c) -> float& { return c.optimizer.grad_clip; });
    num("eval.every", [](TrainConfig& c) -> int64_t& { return c.eval_every; });
    num("eval.batches", [](TrainConfig& c) -> int& { return c.eval_batches; });
    num("sample.every", [](TrainConfig& c) -> int64_t& { return c.sample_every; });
    num("sample.tokens", [](TrainConfig& c) -> int& { return c.sample_tokens; });
    str("sample.prompt", [](TrainConfig& c) -> std::string& { return c.sample_prompt; });
    num("sample.temperature", [](TrainConfig& c) -> float& { return c.sample_temperature; });
    str("runtime.device", [](TrainConfig& c) -> std::string& { return c.device; });
    num("runtime.threads", [](TrainConfig& c) -> int& { return c.threads; });
    num("runtime.peak_tflops", [](TrainConfig& c) -> float& { return c.peak_tflops; });
    num("runtime.graphs", [](TrainConfig& c) -> int& { return c.graphs; });
    num("parallel.zero", [](TrainConfig& c) -> int& { return c.zero; });
    num("parallel.bucket_mb", [](TrainConfig& c) -> float& { return c.bucket_mb; });
    num("parallel.overlap", [](TrainConfig& c) -> int& { return c.overlap; });
    num("parallel.tensor_parallel", [](TrainConfig& c) -> int& { return c.tensor_parallel; });
    str("output.dir", [](TrainConfig& c) -> std::string& { return c.output_dir; });
    num("output.log_every", [](TrainConfig& c) -> int64_t& { return c.log_every; });
    str("checkpoint.dir", [](TrainConfig& c) -> std::string& { return c.checkpoint_dir; });
    num("checkpoint.interval_steps", [](TrainConfig& c) -> int64_t& { return c.checkpoint_every; });
    num("checkpoint.keep", [](TrainConfig& c) -> int& { return c.checkpoint_keep; });
    return t;
  }();
  return *table;
}

absl::Status SetKey(TrainConfig* config, const std::string& key, const std::string& value) {
  auto it = Setters().find(key);
  if (it == Setters().end()) {
    std::vector<std::string> keys;
    for (const auto& [k, s] : Setters()) keys.push_back(k);
    return absl::InvalidArgumentError(
        absl::StrFormat("unknown key '%s' (known keys: %s)", key, absl::StrJoin(keys, ", ")));
  }
  return it->second(*config, value);
}

}  // namespace

absl::Status TrainConfig::Validate() const {
  if (absl::Status s = model.Validate(); !s.ok()) return s;
  if (absl::Status s = optimizer.Validate(); !s.ok()) return s;
  auto bad = [](const std::string& msg) { return absl::InvalidArgumentError(msg); };
  if (train_data.empty()) return bad("data.train is required (a glob of .bin token shards)");
  if (batch_size <= 0) return bad(absl::StrFormat("training.batch_size = %d: must be >= 1", batch_size));
  if (seq_len <= 0) return bad(absl::StrFormat("training.seq_len = %d: must be >= 1", seq_len));
  if (seq_len > model.block_size) {
    return bad(absl::StrFormat(
        "training.seq_len = %d exceeds model.block_size = %d (the position table has only "
        "block_size rows)", seq_len, model.block_size));
  }
  if (grad_accum <= 0) return bad(absl::StrFormat("training.grad_accum = %d: must be >= 1", grad_accum));
  if (global_batch < 0) {
    return bad(absl::StrFormat("training.global_batch = %d: must be >= 0 (0: batch_size x "
                               "grad_accum x ranks)", global_batch));
  }
  if (global_batch % batch_size != 0) {
    return bad(absl::StrFormat(
        "training.global_batch = %d is not a multiple of training.batch_size = %d",
        global_batch, batch_size));
  }
  if (steps < 0) return bad(absl::StrFormat("training.steps = %d: must be >= 0", steps));
  if (eval_every < 0 || eval_batches < 0) return bad("eval.every and eval.batches must be >= 0");
  if (sample_every < 0 || sample_tokens < 0) return bad("sample.every and sample.tokens must be >= 0");
  if (!(sample_temperature > 0)) {
    return bad(absl::StrFormat("sample.temperature = %g: must be > 0", sample_temperature));
  }
  if (threads < 0) return bad(absl::StrFormat("runtime.threads = %d: must be >= 0", threads));
  if (graphs != 0 && graphs != 1) {
    return bad(absl::StrFormat("runtime.graphs = %d: must be 0 or 1", graphs));
  }
  if (!(peak_tflops >= 0)) {
    return bad(absl::StrFormat("runtime.peak_tflops = %g: must be >= 0 (0: by GPU name)", peak_tflops));
  }
  if (zero != 0 && zero != 1) {
    return bad(absl::StrFormat("parallel.zero = %d: must be 0 (plain data parallelism) or 1 "
                               "(ZeRO-1)", zero));
  }
  if (!(bucket_mb > 0)) return bad(absl::StrFormat("parallel.bucket_mb = %g: must be > 0", bucket_mb));
  if (overlap != 0 && overlap != 1) {
    return bad(absl::StrFormat("parallel.overlap = %d: must be 0 or 1", overlap));
  }
  if (tensor_parallel < 1) {
    return bad(absl::StrFormat("parallel.tensor_parallel = %d: must be >= 1", tensor_parallel));
  }
  if (log_every <= 0) return bad(absl::StrFormat("output.log_every = %d: must be >= 1", log_every));
  if (checkpoint_every < 0) {
    return bad(absl::StrFormat("checkpoint.interval_steps = %d: must be >= 0 (0: only after "
                               "the last step)", checkpoint_every));
  }
  if (checkpoint_keep < 1) {
    return bad(absl::StrFormat("checkpoint.keep = %d: must be >= 1", checkpoint_keep));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> MicroBatchesPerRank(const TrainConfig& config, int ranks) {
  if (ranks < 1) return absl::InvalidArgumentError(absl::StrFormat("%d data-parallel ranks", ranks));
  if (config.global_batch == 0) return config.grad_accum;
  const int64_t per_micro = static_cast<int64_t>(config.batch_size) * ranks;
  if (config.global_batch % per_micro != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "training.global_batch = %d does not split into whole micro-batches: it must be a "
        "multiple of training.batch_size (%d) x data-parallel ranks (%d) = %d",
        config.global_batch, config.batch_size, ranks, per_micro));
  }
  const int64_t k = config.global_batch / per_micro;
  if (config.grad_accum != 1 && config.grad_accum != k) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "training.grad_accum = %d disagrees with training.global_batch = %d, which on %d "
        "ranks of training.batch_size %d means %d micro-batches per rank (leave grad_accum "
        "at 1 when global_batch is set)",
        config.grad_accum, config.global_batch, ranks, config.batch_size, k));
  }
  return static_cast<int>(k);
}

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrFormat("%s: cannot open the config file", path));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s:%d:%d: %s", path, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  TrainConfig config;
  if (root.IsNull()) return config;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: the top level must be a mapping of sections", path));
  }
  auto where = [&](const YAML::Node& n) {
    return absl::StrFormat("%s:%d", path, n.Mark().line + 1);
  };
  for (const auto& section : root) {
    const std::string name = section.first.as<std::string>();
    if (!section.second.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: section '%s' must be a mapping", where(section.first), name));
    }
    // The preset replaces the whole model config, so it goes first whatever its place.
    if (name == "model" && section.second["preset"]) {
      const YAML::Node preset = section.second["preset"];
      if (absl::Status s = SetKey(&config, "model.preset", preset.as<std::string>()); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: %s", where(preset), s.message()));
      }
    }
    for (const auto& kv : section.second) {
      const std::string key = name + "." + kv.first.as<std::string>();
      if (key == "model.preset") continue;
      if (!kv.second.IsScalar()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: %s must be a single value", where(kv.first), key));
      }
      if (absl::Status s = SetKey(&config, key, kv.second.Scalar()); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: %s", where(kv.first), s.message()));
      }
    }
  }
  if (absl::Status s = config.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", path, s.message()));
  }
  return config;
}

absl::Status ApplyOverride(TrainConfig* config, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("override '%s' is not of the form section.key=value", assignment));
  }
  return SetKey(config, assignment.substr(0, eq), assignment.substr(eq + 1));
}

}  // namespace colossus
