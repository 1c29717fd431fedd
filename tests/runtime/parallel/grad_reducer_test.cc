// GradReducer on its own: known gradients on 3 Gloo processes, buckets reported in
// and out of order, the sums checked exactly (small integers add exactly in f32).
#include "colossus/parallel/grad_reducer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "colossus/comm/gloo.h"
#include "colossus/config.h"
#include "gtest/gtest.h"
#include "multiproc.h"

namespace colossus::parallel {
namespace {

using comm::testing::RankEnv;

#define RETURN_IF(cond, ...) \
  if (cond) return absl::InternalError(absl::StrCat(__VA_ARGS__))

struct TinyModel {
  std::unique_ptr<kernels::Backend> backend = kernels::MakeCpuBackend(1);
  std::unique_ptr<GPT> model;
  explicit TinyModel() { model = *GPT::Create(*GPTPreset("tiny"), backend.get(), 1, 8); }
};

// Every bucket is a contiguous run of parameters; together they cover all of them
// once, back to front; each but the last reaches the size limit.
absl::Status CheckPlan(const GPT& model, size_t bucket_bytes) {
  const std::vector<GradBucket> buckets = PlanGradBuckets(model, bucket_bytes);
  const auto& grads = model.grads();
  RETURN_IF(buckets.empty(), "no buckets");
  RETURN_IF(buckets.front().end_param != grads.size(), "bucket 0 does not end with the last parameter");
  RETURN_IF(buckets.back().first_param != 0, "the last bucket does not start at parameter 0");
  const char* base = static_cast<const char*>(model.flat_grads().data);
  for (size_t b = 0; b < buckets.size(); ++b) {
    const GradBucket& g = buckets[b];
    RETURN_IF(g.first_param >= g.end_param, "bucket ", b, " is empty");
    if (b + 1 < buckets.size()) {
      RETURN_IF(buckets[b + 1].end_param != g.first_param, "bucket ", b + 1, " does not abut ", b);
    }
    size_t bytes = 0;
    for (size_t p = g.first_param; p < g.end_param; ++p) bytes += grads[p].bytes();
    if (b + 1 < buckets.size()) {
      RETURN_IF(bytes < bucket_bytes, "bucket ", b, " holds ", bytes, " < ", bucket_bytes, " bytes");
      // Minimal: without its first parameter it would be under the limit.
      RETURN_IF(bytes - grads[g.first_param].bytes() >= bucket_bytes, "bucket ", b, " is too big");
    }
    const char* first = static_cast<const char*>(grads[g.first_param].data);
    const char* end = static_cast<const char*>(grads[g.end_param - 1].data) +
                      grads[g.end_param - 1].bytes();
    RETURN_IF(first - base != g.offset * 4 || end - first != g.numel * 4, "bucket ", b,
              " range does not match its parameters");
  }
  return absl::OkStatus();
}

float Expected(int ranks, size_t p, int64_t i) {
  // Rank r writes (r + 1) * (p + 1) + i % 7.
  return static_cast<float>((p + 1) * ranks * (ranks + 1) / 2 + ranks * (i % 7));
}

void FillGrads(GPT& model, int rank) {
  for (size_t p = 0; p < model.grads().size(); ++p) {
    float* g = model.grads()[p].as<float>();
    for (int64_t i = 0; i < model.grads()[p].numel(); ++i) {
      g[i] = static_cast<float>((rank + 1) * (p + 1) + i % 7);
    }
  }
}

absl::Status CheckSums(const GPT& model, int ranks) {
  for (size_t p = 0; p < model.grads().size(); ++p) {
    const float* g = model.grads()[p].as<float>();
    for (int64_t i = 0; i < model.grads()[p].numel(); ++i) {
      RETURN_IF(g[i] != Expected(ranks, p, i), model.grads()[p].name, "[", i, "] = ", g[i],
                ", expected ", Expected(ranks, p, i));
    }
  }
  // The gaps between tensors were summed too: zeros stay zero.
  const float* flat = model.flat_grads().as<float>();
  const char* base = static_cast<const char*>(model.flat_grads().data);
  int64_t pos = 0;
  for (const Tensor& t : model.grads()) {
    const int64_t start = (static_cast<const char*>(t.data) - base) / 4;
    for (; pos < start; ++pos) RETURN_IF(flat[pos] != 0.0f, "gap element ", pos, " = ", flat[pos]);
    pos = start + t.numel();
  }
  return absl::OkStatus();
}

TEST(GradReducer, BucketPlansCoverEveryParameterOnceBackToFront) {
  const auto results = comm::testing::RunRanks(
      1,
      [](const RankEnv&) -> absl::Status {
        TinyModel m;
        for (size_t bytes : {size_t{1}, size_t{1} << 10, size_t{64} << 10, size_t{1} << 30}) {
          if (absl::Status s = CheckPlan(*m.model, bytes); !s.ok()) {
            return absl::InternalError(absl::StrCat(bytes, "-byte buckets: ", s.message()));
          }
        }
        RETURN_IF(PlanGradBuckets(*m.model, 1).size() != m.model->params().size(),
                  "1-byte buckets should hold one parameter each");
        RETURN_IF(PlanGradBuckets(*m.model, size_t{1} << 30).size() != 1,
                  "a bucket larger than the model should hold everything");
        return absl::OkStatus();
      },
      absl::Seconds(30));
  comm::testing::ExpectAllOk(results);
}

TEST(GradReducer, SumsEveryBucketOverThreeRanksLaunchingStrictlyInOrder) {
  const auto results = comm::testing::RunRanks(
      3,
      [](const RankEnv& env) -> absl::Status {
        TinyModel m;
        GPT& model = *m.model;
        auto comm = comm::CreateGlooCommunicator(env.store, env.rank, env.size);
        if (!comm.ok()) return comm.status();
        // One parameter per bucket, so the launch order is easy to predict.
        auto reducer = GradReducer::Create(&model, comm->get(), 1);
        if (!reducer.ok()) return reducer.status();
        GradReducer& red = **reducer;
        const size_t P = model.params().size();
        const int L = model.config().n_layer;

        // Step 1: the embeddings reported first (out of the backward order): nothing
        // may leave before bucket 0 (ln_f's) is complete.
        FillGrads(model, env.rank);
        red.BeginStep();
        red.OnGradsReady(0, 2);
        red.OnGradsReady(P - 2, P);  // ln_f
        for (int l = L - 1; l >= 0; --l) red.OnGradsReady(2 + 12 * l, 2 + 12 * (l + 1));
        if (absl::Status s = red.Finish(); !s.ok()) return s;
        if (absl::Status s = CheckSums(model, env.size); !s.ok()) return s;
        const GradReducer::StepReport& r1 = red.last_step();
        RETURN_IF(r1.launched_by_hook != static_cast<int>(red.buckets().size()),
                  "step 1 launched ", r1.launched_by_hook, " of ", red.buckets().size(), " by hook");
        RETURN_IF(r1.launched_after_calls.front() != 2, "bucket 0 left after call ",
                  r1.launched_after_calls.front(), ", expected 2 (when ln_f was reported)");
        // The embeddings' buckets (last in order) were complete first but waited for
        // every block: they went with the final call.
        RETURN_IF(r1.launched_after_calls.back() != L + 2, "the last bucket left after call ",
                  r1.launched_after_calls.back());
        RETURN_IF(!std::is_sorted(r1.launched_after_calls.begin(), r1.launched_after_calls.end()),
                  "buckets left out of order");

        // Step 2: no hook at all; Finish sends everything.
        FillGrads(model, env.rank);
        red.BeginStep();
        if (absl::Status s = red.Finish(); !s.ok()) return s;
        if (absl::Status s = CheckSums(model, env.size); !s.ok()) return s;
        RETURN_IF(red.last_step().launched_by_finish != static_cast<int>(red.buckets().size()),
                  "step 2: Finish should launch every bucket");
        return absl::OkStatus();
      },
      absl::Seconds(60));
  comm::testing::ExpectAllOk(results);
}

// A peer that disappears mid-step: Finish reports the failure, naming the bucket,
// instead of hanging or crashing.
TEST(GradReducer, APeerThatDiesMakesFinishFailNamingTheBucket) {
  const auto results = comm::testing::RunRanks(
      2,
      [](const RankEnv& env) -> absl::Status {
        TinyModel m;
        comm::GlooOptions go;
        go.comm.timeout = absl::Seconds(20);
        auto comm = comm::CreateGlooCommunicator(env.store, env.rank, env.size, go);
        if (!comm.ok()) return comm.status();
        if (env.rank == 1) _exit(0);  // gone before the first bucket
        auto reducer = GradReducer::Create(m.model.get(), comm->get(), 1 << 30);
        if (!reducer.ok()) return reducer.status();
        FillGrads(*m.model, env.rank);
        (*reducer)->BeginStep();
        const absl::Status s = (*reducer)->Finish();
        RETURN_IF(s.ok(), "Finish succeeded without its peer");
        RETURN_IF(std::string(s.message()).find("gradient bucket 0 of 1") == std::string::npos,
                  "the error does not name the bucket: ", s.ToString());
        return absl::OkStatus();
      },
      absl::Seconds(60));
  comm::testing::ExpectAllOk(results);
}

}  // namespace
}  // namespace colossus::parallel
