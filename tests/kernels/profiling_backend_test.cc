// ProfilingBackend (colossus/kernels/profiling_backend.h) over the CPU backend: its
// arithmetic on a scripted clock, that forwarding changes no result, what is and is not
// recorded, and the real host clock's figures being consistent with a wall clock.
#include "colossus/kernels/profiling_backend.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::kernels {
namespace {

using ::testing::HasSubstr;

// Hands out scripted times; the test checks the profile's arithmetic exactly.
class ScriptedTimer final : public OpTimer {
 public:
  explicit ScriptedTimer(std::deque<double> times) : times_(std::move(times)) {}
  void Mark() override {
    ASSERT_FALSE(times_.empty()) << "more marks than scripted times";
    marks_.push_back(times_.front());
    times_.pop_front();
  }
  std::vector<double> Resolve() override {
    std::vector<double> out;
    for (double t : marks_) out.push_back(t - marks_.front());
    marks_.clear();
    return out;
  }

 private:
  std::deque<double> times_;
  std::vector<double> marks_;
};

std::vector<float> Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<float> Poisoned(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

TEST(ProfilingBackend, SumsOpsByNameAndCategoryAndCountsTheGapsBetweenThem) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend(1);
  // Marks in ms: each op's start and end. Matmul 0-3, GELU 4-5, attention 5-7,
  // CopyToHost 7-7.5, Matmul 8-10: 1 ms between GELU and the first matmul's end, 0.5 ms
  // before the last matmul.
  ProfilingBackend prof(cpu.get(), std::make_unique<ScriptedTimer>(std::deque<double>{
                                       100, 103, 104, 105, 105, 107, 107, 107.5, 108, 110}));
  const int N = 3, C = 4, OC = 5, B = 1, T = 3, NH = 2;
  std::vector<float> x = Random(N * C, 1), w = Random(OC * C, 2), out = Poisoned(N * OC);
  std::vector<float> g = Poisoned(N * OC);
  std::vector<float> qkv = Random(B * T * 3 * C, 3), att = Poisoned(B * T * C), lse(B * NH * T);
  float host = 0;
  prof.Start();
  prof.MatmulForward(View(out.data(), N * OC), View(x.data(), N * C), View(w.data(), OC * C),
                     View(), N, C, OC);
  prof.GeluForward(View(g.data(), N * OC), View(out.data(), N * OC), N * OC);
  prof.AttentionForward(View(att.data(), B * T * C), lse.data(), View(qkv.data(), qkv.size()),
                        B, T, C, NH);
  prof.CopyToHost(&host, out.data(), sizeof(float));
  prof.MatmulForward(View(out.data(), N * OC), View(x.data(), N * C), View(w.data(), OC * C),
                     View(), N, C, OC);
  const OpProfile p = prof.Stop(1);

  EXPECT_EQ(p.steps, 1);
  EXPECT_DOUBLE_EQ(p.span_ms, 10.0);
  EXPECT_DOUBLE_EQ(p.ops_ms, 3 + 1 + 2 + 0.5 + 2);
  EXPECT_DOUBLE_EQ(p.between_ops_ms(), 1.5);
  EXPECT_DOUBLE_EQ(p.CategoryMs(OpCategory::kGemm), 5.0);
  EXPECT_DOUBLE_EQ(p.CategoryMs(OpCategory::kAttention), 2.0);
  EXPECT_DOUBLE_EQ(p.CategoryMs(OpCategory::kOther), 1.0);
  EXPECT_DOUBLE_EQ(p.CategoryMs(OpCategory::kHostCopy), 0.5);
  EXPECT_DOUBLE_EQ(p.NonGemmShare(), 3.5 / 10.0);
  EXPECT_DOUBLE_EQ(p.NonGemmShareExcludingAttention(), 1.5 / 10.0);
  ASSERT_EQ(p.ops.size(), 4u);
  EXPECT_EQ(p.ops[0].op, "MatmulForward");  // longest total first
  EXPECT_EQ(p.ops[0].calls, 2);
  EXPECT_DOUBLE_EQ(p.ops[0].total_ms, 5.0);
  EXPECT_EQ(p.ops[1].op, "AttentionForward");
  EXPECT_EQ(p.ops[2].op, "GeluForward");
  EXPECT_EQ(p.ops[3].op, "CopyToHost");
  EXPECT_EQ(p.ops[3].category, OpCategory::kHostCopy);

  const std::string table = p.Table();
  EXPECT_THAT(table, HasSubstr("MatmulForward"));
  EXPECT_THAT(table, HasSubstr("non-GEMM kernels: 35.0% of the step (15.0% without attention)"));
  const std::string json = p.Json();
  EXPECT_THAT(json, HasSubstr("\"non_gemm_share\":0.35,"));
  EXPECT_THAT(json, HasSubstr("{\"op\":\"MatmulForward\",\"category\":\"gemm\",\"calls\":2,"
                              "\"total_ms\":5}"));
  EXPECT_THAT(json, HasSubstr("\"category_ms\":{\"gemm\":5,\"attention\":2,\"other\":1,"
                              "\"host_copy\":0.5}"));
}

TEST(ProfilingBackend, PerStepFiguresDivideByTheStepsGiven) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend(1);
  ProfilingBackend prof(cpu.get(),
                        std::make_unique<ScriptedTimer>(std::deque<double>{0, 2, 2, 4}));
  std::vector<float> a(8, 1.0f);
  prof.Start();
  prof.Fill(View(a.data(), 8), 0.0f);
  prof.Fill(View(a.data(), 8), 0.0f);
  const OpProfile p = prof.Stop(2);
  EXPECT_THAT(p.Table(), HasSubstr("2.000 ms per step"));
  EXPECT_THAT(p.Table(), ::testing::ContainsRegex("Fill +other +1\\.0 +2\\.000 +100\\.0%"));
}

TEST(ProfilingBackend, RecordsOnlyBetweenStartAndStop) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend(1);
  ProfilingBackend prof(cpu.get());
  std::vector<float> a(16, 1.0f), b(16, 2.0f);
  EXPECT_FALSE(prof.recording());
  EXPECT_TRUE(prof.Stop().ops.empty()) << "Stop without Start";
  prof.Add(View(a.data(), 16), View(a.data(), 16), View(b.data(), 16), 16);  // not recorded
  prof.Start();
  prof.Accumulate(View(a.data(), 16), View(b.data(), 16), 16);  // dropped by the restart
  prof.Start();
  EXPECT_TRUE(prof.recording());
  prof.Cast(View(b.data(), 16), View(a.data(), 16), 16);
  OpProfile p = prof.Stop();
  EXPECT_FALSE(prof.recording());
  ASSERT_EQ(p.ops.size(), 1u);
  EXPECT_EQ(p.ops[0].op, "Cast");
  EXPECT_EQ(p.ops[0].calls, 1);
  prof.Add(View(a.data(), 16), View(a.data(), 16), View(b.data(), 16), 16);
  EXPECT_TRUE(prof.Stop().ops.empty()) << "ops after Stop are not recorded";
  // No capture while recording; otherwise the inner backend's answer (the CPU cannot).
  prof.Start();
  EXPECT_EQ(prof.BeginCapture().code(), absl::StatusCode::kFailedPrecondition);
  prof.Stop();
  EXPECT_EQ(prof.BeginCapture().code(), absl::StatusCode::kUnimplemented);
  // a = 1 + 2, then += 2; b = a; a = a + b: every op ran, recorded or not.
  EXPECT_EQ(a[0], 10.0f);
}

TEST(ProfilingBackend, ForwardingChangesNoResult) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend(1);
  ProfilingBackend prof(cpu.get());
  const int N = 7, C = 12, OC = 9, V = 9, Vp = 16;
  const std::vector<float> x = Random(N * C, 4), w = Random(OC * C, 5), bias = Random(OC, 6);
  const std::vector<float> lnw = Random(C, 7), lnb = Random(C, 8), logits = Random(N * Vp, 9);
  const std::vector<float> grad = Random(OC * C, 12);
  std::vector<int32_t> targets(N);
  for (int i = 0; i < N; ++i) targets[i] = (i * 5) % V;

  struct Outputs {
    std::vector<float> mm = Poisoned(N * OC), ln = Poisoned(N * C), mean = Poisoned(N),
                       rstd = Poisoned(N), losses = Poisoned(N), ce_lse = Poisoned(N),
                       param, m, v;
  };
  auto run = [&](Backend& be) {
    Outputs o;
    be.MatmulForward(View(o.mm.data(), N * OC), View(const_cast<float*>(x.data()), N * C),
                     View(const_cast<float*>(w.data()), OC * C),
                     View(const_cast<float*>(bias.data()), OC), N, C, OC);
    be.LayerNormForward(View(o.ln.data(), N * C), o.mean.data(), o.rstd.data(),
                        View(const_cast<float*>(x.data()), N * C),
                        View(const_cast<float*>(lnw.data()), C),
                        View(const_cast<float*>(lnb.data()), C), N, C);
    be.CrossEntropyForward(o.losses.data(), o.ce_lse.data(),
                           View(const_cast<float*>(logits.data()), N * Vp), targets.data(), N,
                           V, Vp);
    o.param = w;
    o.m.assign(w.size(), 0.0f);
    o.v.assign(w.size(), 0.0f);
    AdamWParams ap;
    ap.lr = 1e-2f;
    ap.weight_decay = 0.1f;
    be.AdamW(View(o.param.data(), o.param.size()),
             View(const_cast<float*>(grad.data()), grad.size()), o.m.data(), o.v.data(), View(),
             static_cast<int64_t>(o.param.size()), ap);
    return o;
  };
  prof.Start();
  const Outputs got = run(prof);
  EXPECT_FALSE(prof.Stop().ops.empty());
  const Outputs want = run(*cpu);
  // Bitwise: the same kernels on the same arguments.
  EXPECT_EQ(0, std::memcmp(got.mm.data(), want.mm.data(), got.mm.size() * 4));
  EXPECT_EQ(0, std::memcmp(got.ln.data(), want.ln.data(), got.ln.size() * 4));
  EXPECT_EQ(0, std::memcmp(got.rstd.data(), want.rstd.data(), got.rstd.size() * 4));
  EXPECT_EQ(0, std::memcmp(got.losses.data(), want.losses.data(), got.losses.size() * 4));
  EXPECT_EQ(0, std::memcmp(got.param.data(), want.param.data(), got.param.size() * 4));
  EXPECT_EQ(0, std::memcmp(got.v.data(), want.v.data(), got.v.size() * 4));
  for (float l : got.losses) EXPECT_TRUE(std::isfinite(l));
}

TEST(ProfilingBackend, HostClockFiguresFitInsideTheWallClock) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend(1);
  ProfilingBackend prof(cpu.get());  // the real host clock
  const int N = 256, C = 256, OC = 512;
  std::vector<float> x = Random(N * C, 10), w = Random(OC * C, 11), out(N * OC), g(N * OC);
  const auto t0 = std::chrono::steady_clock::now();
  prof.Start();
  for (int i = 0; i < 3; ++i) {
    prof.MatmulForward(View(out.data(), N * OC), View(x.data(), N * C), View(w.data(), OC * C),
                       View(), N, C, OC);
    prof.GeluForward(View(g.data(), N * OC), View(out.data(), N * OC), N * OC);
  }
  const OpProfile p = prof.Stop(3);
  const double wall = std::chrono::duration<double, std::milli>(
                          std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(p.CategoryMs(OpCategory::kGemm), 0.0);
  EXPECT_GT(p.CategoryMs(OpCategory::kOther), 0.0);
  EXPECT_LE(p.ops_ms, p.span_ms);
  EXPECT_LE(p.span_ms, wall);
  EXPECT_GE(p.between_ops_ms(), 0.0);
  // A 256x256x512 GEMM is far more work than a GELU over its output.
  EXPECT_GT(p.CategoryMs(OpCategory::kGemm), p.CategoryMs(OpCategory::kOther));
}

}  // namespace
}  // namespace colossus::kernels
