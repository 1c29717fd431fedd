// Where exported weights come from (hf_export.h): a committed sharded checkpoint, read
// through the checkpoint module's loader at dp = 1, or a SaveWeights file.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "colossus/checkpoint/format.h"
#include "colossus/checkpoint/reader.h"
#include "colossus/checkpoint/state.h"
#include "colossus/hf_export.h"
#include "colossus/weights.h"

namespace colossus::hf {
namespace {

namespace fs = std::filesystem;

std::string StepList(const std::vector<checkpoint::CommittedStep>& steps) {
  if (steps.empty()) return "none";
  std::vector<int64_t> ids;
  for (const auto& s : steps) ids.push_back(s.step);
  return absl::StrJoin(ids, ", ");
}

// Step directories under `dir` newer than `after` that hold no COMMIT.json: saves that
// were cut off before the commit. The loader never considers them; the user is told.
std::vector<checkpoint::SkippedStep> UncommittedAfter(
    const std::string& dir, int64_t after, const std::vector<checkpoint::CommittedStep>& committed) {
  std::vector<checkpoint::SkippedStep> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    int64_t step = 0;
    if (!checkpoint::ParseStepDirName(e.path().filename().string(), &step) || step <= after) continue;
    const bool is_committed = std::any_of(committed.begin(), committed.end(),
                                          [&](const auto& c) { return c.step == step; });
    if (is_committed) continue;
    out.push_back({step, e.path().string(),
                   absl::FailedPreconditionError(absl::StrCat(
                       (e.path() / checkpoint::kCommitFileName).string(),
                       " does not exist: the step was never committed"))});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step > b.step; });
  return out;
}

// A load of the whole parameter vector into `m`'s flat buffer, the optimizer's
// settings not compared (export needs only the weights).
checkpoint::LoadRequest ParamsRequest(LoadedModel& m) {
  checkpoint::LoadRequest req;
  req.rank = 0;
  req.model = m.model->config();
  req.check_optimizer = false;
  req.backend = m.backend.get();
  req.pieces = checkpoint::WholeDestPieces(checkpoint::FlatLayout::FromModel(*m.model),
                                           checkpoint::StateVector::kParams,
                                           m.model->flat_params().as<float>());
  return req;
}

}  // namespace

absl::StatusOr<LoadedModel> MakeCpuModel(const GPTConfig& config) {
  LoadedModel m;
  m.backend = kernels::MakeCpuBackend(1);
  // Batch 1 of 1 token: the activations are negligible next to the weights.
  absl::StatusOr<std::unique_ptr<GPT>> model = GPT::Create(config, m.backend.get(), 1, 1);
  if (!model.ok()) return model.status();
  m.model = *std::move(model);
  return m;
}

absl::StatusOr<LoadedModel> LoadCheckpointModel(const std::string& dir,
                                                std::optional<int64_t> step) {
  absl::StatusOr<std::vector<checkpoint::CommittedStep>> committed = checkpoint::ListCommitted(dir);
  if (!committed.ok()) return committed.status();

  if (step.has_value()) {
    const std::string step_dir = checkpoint::StepDir(dir, *step);
    auto it = std::find_if(committed->begin(), committed->end(),
                           [&](const auto& c) { return c.step == *step; });
    if (it == committed->end()) {
      std::error_code ec;
      if (!fs::exists(step_dir, ec)) {
        return absl::NotFoundError(absl::StrCat(step_dir, " does not exist; committed steps in ",
                                                dir, ": ", StepList(*committed)));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          (fs::path(step_dir) / checkpoint::kCommitFileName).string(),
          " does not exist: step ", *step, " was never committed; committed steps in ", dir, ": ",
          StepList(*committed)));
    }
    if (!it->status.ok()) return it->status;
    absl::StatusOr<LoadedModel> m = MakeCpuModel(it->record.meta.model);
    if (!m.ok()) return m.status();
    absl::StatusOr<checkpoint::LoadedCheckpoint> loaded =
        checkpoint::LoadCheckpoint(it->step_dir, ParamsRequest(*m));
    if (!loaded.ok()) return loaded.status();
    m->model->SyncComputeWeights();
    m->source = loaded->step_dir;
    m->step = loaded->meta.step;
    m->skipped = UncommittedAfter(dir, m->step, *committed);
    return m;
  }

  // The model's shape comes from the newest commit record that parsed; the loader then
  // refuses (FailedPrecondition) any step of another shape instead of falling back.
  auto usable = std::find_if(committed->begin(), committed->end(),
                             [](const auto& c) { return c.status.ok(); });
  if (usable == committed->end()) {
    if (committed->empty()) {
      return absl::NotFoundError(absl::StrCat(
          dir, ": no committed checkpoint (no step-*/", checkpoint::kCommitFileName, ")"));
    }
    std::vector<std::string> why;
    for (const auto& c : *committed) why.push_back(std::string(c.status.message()));
    return absl::DataLossError(absl::StrCat(dir, ": no usable committed checkpoint: ",
                                            absl::StrJoin(why, "; ")));
  }
  absl::StatusOr<LoadedModel> m = MakeCpuModel(usable->record.meta.model);
  if (!m.ok()) return m.status();
  absl::StatusOr<checkpoint::LoadOutcome> outcome = checkpoint::LoadLatestValid(dir, ParamsRequest(*m));
  if (!outcome.ok()) return outcome.status();
  m->model->SyncComputeWeights();
  m->source = outcome->loaded.step_dir;
  m->step = outcome->loaded.meta.step;
  m->skipped = UncommittedAfter(dir, m->step, *committed);
  m->skipped.insert(m->skipped.end(), outcome->skipped.begin(), outcome->skipped.end());
  std::sort(m->skipped.begin(), m->skipped.end(),
            [](const auto& a, const auto& b) { return a.step > b.step; });
  return m;
}

absl::StatusOr<LoadedModel> LoadWeightsModel(const std::string& path) {
  absl::StatusOr<GPTConfig> config = ReadWeightsConfig(path);
  if (!config.ok()) return config.status();
  absl::StatusOr<LoadedModel> m = MakeCpuModel(*config);
  if (!m.ok()) return m.status();
  if (absl::Status s = LoadWeights(m->model.get(), path); !s.ok()) return s;
  m->source = path;
  return m;
}

}  // namespace colossus::hf
