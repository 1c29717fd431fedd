// colossus-export: our weights as a Hugging Face GPT-2 model directory, and back.
//
//   colossus-export --checkpoint DIR [--step N] --out OUTDIR   a committed checkpoint
//   colossus-export --weights FILE.safetensors --out OUTDIR     a trainer's weights file
//   colossus-export --import HFDIR --out FILE.safetensors [--padded-vocab N]
//
// Export writes OUTDIR/model.safetensors and OUTDIR/config.json, which
// transformers.GPT2LMHeadModel.from_pretrained(OUTDIR) loads (names and layouts in
// colossus/hf_export.h). Without --step the newest committed step that loads is
// exported; newer steps passed over (corrupt, truncated, never committed) are listed
// with the file at fault. Import writes our weights format (colossus/weights.h), the
// vocabulary padded to the config's Vp (--padded-vocab, else the config.json's
// "colossus_padded_vocab_size", else V rounded up to a multiple of 128).
//
// Exit status: 0 success, 2 usage error, 1 anything else (the message, naming the file,
// goes to stderr).
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "colossus/hf_export.h"
#include "colossus/weights.h"

namespace colossus {
namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

int Fail(const absl::Status& s) {
  std::cerr << "colossus-export: " << s.message() << "\n";
  return kExitError;
}

int Usage(const std::string& what) {
  std::cerr << "colossus-export: " << what << " (see --help)\n";
  return kExitUsage;
}

int Export(const hf::LoadedModel& m, const std::string& out) {
  for (const auto& s : m.skipped) {
    std::cerr << "colossus-export: passed over step " << s.step << ": " << s.why.message() << "\n";
  }
  if (absl::Status s = hf::ExportHuggingFace(*m.model, out); !s.ok()) return Fail(s);
  std::cout << "exported ";
  if (m.step >= 0) std::cout << "step " << m.step << " ";
  std::cout << "from " << m.source << " (" << m.model->config().DebugString() << ") to " << out
            << "/"
            << hf::kWeightsFileName << " and " << out << "/" << hf::kConfigFileName << "\n";
  return 0;
}

int Run(int argc, char** argv) {
  CLI::App app{"colossus-export: weights to and from Hugging Face GPT-2 safetensors"};
  std::string checkpoint_dir, weights_file, import_dir, out;
  int64_t step = -1;
  int padded_vocab = 0;
  auto* ckpt_opt = app.add_option("--checkpoint", checkpoint_dir,
                                  "sharded checkpoint directory (holds step-*/COMMIT.json)");
  auto* step_opt = app.add_option("--step", step, "export this committed step (default: newest that loads)")
                       ->check(CLI::NonNegativeNumber);
  auto* weights_opt = app.add_option("--weights", weights_file, "weights file written by the trainer");
  auto* import_opt = app.add_option("--import", import_dir,
                                    "Hugging Face GPT-2 directory (config.json, model.safetensors)");
  auto* pad_opt = app.add_option("--padded-vocab", padded_vocab, "Vp of the imported model (--import)")
                      ->check(CLI::PositiveNumber);
  app.add_option("--out", out, "export: output directory; import: output weights file")->required();
  ckpt_opt->excludes(weights_opt)->excludes(import_opt);
  weights_opt->excludes(import_opt);
  step_opt->needs(ckpt_opt);
  pad_opt->needs(import_opt);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  if (checkpoint_dir.empty() && weights_file.empty() && import_dir.empty()) {
    return Usage("one of --checkpoint, --weights or --import is required");
  }

  if (!import_dir.empty()) {
    absl::StatusOr<GPTConfig> config = hf::ReadHuggingFaceConfig(import_dir, padded_vocab);
    if (!config.ok()) return Fail(config.status());
    absl::StatusOr<hf::LoadedModel> m = hf::MakeCpuModel(*config);
    if (!m.ok()) return Fail(m.status());
    if (absl::Status s = hf::ImportHuggingFace(import_dir, m->model.get()); !s.ok()) return Fail(s);
    if (absl::Status s = SaveWeights(*m->model, out); !s.ok()) return Fail(s);
    std::cout << "imported " << import_dir << " (" << config->DebugString() << ") to " << out << "\n";
    return 0;
  }
  absl::StatusOr<hf::LoadedModel> m =
      !weights_file.empty()
          ? hf::LoadWeightsModel(weights_file)
          : hf::LoadCheckpointModel(checkpoint_dir,
                                    step >= 0 ? std::optional<int64_t>(step) : std::nullopt);
  if (!m.ok()) return Fail(m.status());
  return Export(*m, out);
}

}  // namespace
}  // namespace colossus

int main(int argc, char** argv) { return colossus::Run(argc, argv); }
