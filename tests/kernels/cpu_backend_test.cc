// CpuBackend (MakeCpuBackend): the View-checking adapter over the CPU ops, the
// dtype-generic ops (Fill, Cast, SumSquares), AdamW, memory, and threading.
// The ops' numerics are tested in cpu_ops_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "colossus/kernels/backend.h"
#include "kernels/gradcheck.h"

namespace colossus::kernels {
namespace {

using testing::Cast;
using testing::SeededTest;
using testing::Uniform;
using testing::UniformInts;
using ::testing::HasSubstr;

class CpuBackendTest : public SeededTest {
 protected:
  std::unique_ptr<Backend> cpu_ = MakeCpuBackend(2);
};

std::vector<float> RandomFloats(size_t n, std::mt19937_64& rng, double lo = -1, double hi = 1) {
  return Cast<float>(Uniform(n, rng, lo, hi));
}

// ---- description, memory, copies -----------------------------------------------------------

TEST_F(CpuBackendTest, DescribesThreadsAndBlas) {
  EXPECT_EQ(cpu_->kind(), DeviceKind::kCPU);
  EXPECT_THAT(MakeCpuBackend(3)->Describe(), HasSubstr("cpu (3 threads, OpenBLAS"));
}

TEST_F(CpuBackendTest, AllocatesAlignedMemoryAndFreesIt) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{1000}, size_t{1} << 20}) {
    absl::StatusOr<void*> p = cpu_->Allocate(bytes);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_NE(*p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % 256, 0u) << bytes << " bytes";
    if (bytes > 0) std::memset(*p, 0xab, bytes);  // ASan catches a short allocation
    cpu_->Free(*p);
  }
  cpu_->Free(nullptr);
}

TEST_F(CpuBackendTest, CopiesBytes) {
  const std::vector<float> src = RandomFloats(37, rng_);
  std::vector<float> a(37, 0.0f), b(37, 0.0f), c(37, 0.0f);
  cpu_->CopyFromHost(a.data(), src.data(), 37 * sizeof(float));
  cpu_->Copy(b.data(), a.data(), 37 * sizeof(float));
  cpu_->CopyToHost(c.data(), b.data(), 37 * sizeof(float));
  EXPECT_EQ(c, src);
  cpu_->Copy(nullptr, nullptr, 0);
  cpu_->Synchronize();
}

// ---- Fill, Cast, SumSquares ------------------------------------------------------------------

TEST_F(CpuBackendTest, FillsEveryDtype) {
  std::vector<float> f32(40000);  // long enough for the parallel path
  cpu_->Fill(View(f32.data(), f32.size()), 1.25f);
  EXPECT_EQ(f32, std::vector<float>(f32.size(), 1.25f));
  std::vector<double> f64(5);
  cpu_->Fill(View(f64.data(), 5), 0.1f);
  EXPECT_EQ(f64, std::vector<double>(5, static_cast<double>(0.1f)));
  std::vector<uint16_t> bf16(5), f16(5);
  cpu_->Fill(View(bf16.data(), DType::kBF16, 5), 0.1f);
  EXPECT_EQ(bf16, std::vector<uint16_t>(5, FloatToBf16(0.1f)));
  cpu_->Fill(View(f16.data(), DType::kF16, 5), 1.5f);
  EXPECT_EQ(f16, std::vector<uint16_t>(5, uint16_t{0x3e00}));  // 1.5 in IEEE half
  std::vector<int32_t> i32(5);
  cpu_->Fill(View(i32.data(), DType::kI32, 5), -3.0f);
  EXPECT_EQ(i32, std::vector<int32_t>(5, -3));
  // NaN, for poisoning, survives every float dtype.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  cpu_->Fill(View(f32.data(), 3), nan);
  cpu_->Fill(View(bf16.data(), DType::kBF16, 3), nan);
  EXPECT_TRUE(std::isnan(f32[2]));
  EXPECT_TRUE(std::isnan(Bf16ToFloat(bf16[2])));
  cpu_->Fill(View(), 1.0f);  // empty: nothing to do
}

TEST_F(CpuBackendTest, CastsBetweenFloatDtypes) {
  const size_t n = 50001;
  std::vector<float> x = RandomFloats(n, rng_, -100, 100);
  x[0] = 0.0f, x[1] = -0.0f, x[2] = 1.0f / 3.0f, x[3] = 65504.0f, x[4] = 1e-6f;
  // f32 -> bf16 rounds to nearest even, exactly as dtype.h's FloatToBf16.
  std::vector<uint16_t> bf16(n);
  cpu_->Cast(View(bf16.data(), DType::kBF16, n), View(x.data(), n), n);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += bf16[i] != FloatToBf16(x[i]);
  EXPECT_EQ(bad, 0u) << "elements differing from FloatToBf16";
  // bf16 -> f32 is exact.
  std::vector<float> back(n);
  cpu_->Cast(View(back.data(), n), View(bf16.data(), DType::kBF16, n), n);
  bad = 0;
  for (size_t i = 0; i < n; ++i) bad += back[i] != Bf16ToFloat(bf16[i]);
  EXPECT_EQ(bad, 0u);
  // f32 -> f16 -> f32: half precision's relative rounding error is at most 2^-11.
  std::vector<uint16_t> f16(n);
  cpu_->Cast(View(f16.data(), DType::kF16, n), View(x.data(), n), n);
  EXPECT_EQ(f16[2], 0x3555);  // 1/3
  EXPECT_EQ(f16[3], 0x7bff);  // 65504, the largest half
  EXPECT_EQ(f16[1], 0x8000);  // -0
  cpu_->Cast(View(back.data(), n), View(f16.data(), DType::kF16, n), n);
  bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double tol = std::ldexp(std::fabs(x[i]), -11) + 6e-8;  // + half of a subnormal step
    bad += !(std::fabs(back[i] - x[i]) <= tol);
  }
  EXPECT_EQ(bad, 0u);
  // f32 <-> f64, and a same-dtype cast is a copy.
  std::vector<double> f64(n);
  cpu_->Cast(View(f64.data(), n), View(x.data(), n), n);
  cpu_->Cast(View(back.data(), n), View(f64.data(), n), n);
  EXPECT_EQ(back, x);
  std::vector<float> same(n);
  cpu_->Cast(View(same.data(), n), View(x.data(), n), n);
  EXPECT_EQ(same, x);
}

TEST_F(CpuBackendTest, SumSquaresAddsToOutInDouble) {
  const size_t n = 100003;
  const std::vector<float> x = RandomFloats(n, rng_);
  double expected = 2.0;
  for (float v : x) expected += static_cast<double>(v) * v;
  float out = 2.0f;
  cpu_->SumSquares(&out, View(const_cast<float*>(x.data()), n), n);
  EXPECT_NEAR(out, expected, expected * 1e-7);
  // bf16 and f64 inputs, and only the first n elements count.
  std::vector<uint16_t> bf16(n + 5, FloatToBf16(1000.0f));
  double expected16 = 0;
  for (size_t i = 0; i < n; ++i) {
    bf16[i] = FloatToBf16(x[i]);
    expected16 += static_cast<double>(Bf16ToFloat(bf16[i])) * Bf16ToFloat(bf16[i]);
  }
  float out16 = 0.0f;
  cpu_->SumSquares(&out16, View(bf16.data(), DType::kBF16, n + 5), n);
  EXPECT_NEAR(out16, expected16, expected16 * 1e-7);
  std::vector<double> f64 = Cast<double>(x);
  float out64 = 0.0f;
  cpu_->SumSquares(&out64, View(f64.data(), n), n);
  EXPECT_NEAR(out64, expected - 2.0, expected * 1e-7);
}

// ---- AdamW -------------------------------------------------------------------------------

// torch.optim.AdamW's update for one element, in double from the float state.
struct AdamState {
  double param, m, v;
};
AdamState ReferenceAdamW(AdamState s, double g, const AdamWParams& p) {
  g *= p.grad_scale;
  s.m = p.beta1 * s.m + (1 - p.beta1) * g;
  s.v = p.beta2 * s.v + (1 - p.beta2) * g * g;
  const double mhat = s.m / (1 - std::pow(static_cast<double>(p.beta1), p.step));
  const double vhat = s.v / (1 - std::pow(static_cast<double>(p.beta2), p.step));
  s.param -= p.lr * (mhat / (std::sqrt(vhat) + p.eps) + p.weight_decay * s.param);
  return s;
}

TEST_F(CpuBackendTest, AdamWMatchesTorchsFormula) {
  const size_t n = 20011;
  AdamWParams p;
  p.lr = 3e-3f;
  p.beta1 = 0.9f;
  p.beta2 = 0.95f;
  p.eps = 1e-8f;
  p.weight_decay = 0.1f;
  p.grad_scale = 0.5f;
  p.step = 7;
  std::vector<float> param = RandomFloats(n, rng_), m = RandomFloats(n, rng_, -0.01, 0.01);
  std::vector<float> v = RandomFloats(n, rng_, 0, 1e-4);
  const std::vector<float> grad = RandomFloats(n, rng_, -0.1, 0.1);
  // The gradient as bf16 (what CUDA would hand over) and a bf16 parameter copy.
  std::vector<uint16_t> grad16(n), copy16(n);
  for (size_t i = 0; i < n; ++i) grad16[i] = FloatToBf16(grad[i]);

  for (const bool bf16_grad : {false, true}) {
    SCOPED_TRACE(bf16_grad ? "bf16 grad" : "f32 grad");
    std::vector<float> pp = param, mm = m, vv = v;
    const View g = bf16_grad ? View(grad16.data(), DType::kBF16, n)
                             : View(const_cast<float*>(grad.data()), n);
    cpu_->AdamW(View(pp.data(), n), g, mm.data(), vv.data(), View(copy16.data(), DType::kBF16, n),
                n, p);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const double gi = bf16_grad ? Bf16ToFloat(grad16[i]) : grad[i];
      const AdamState want = ReferenceAdamW({param[i], m[i], v[i]}, gi, p);
      // Tolerances are float rounding at the scale of each quantity's terms (m cancels:
      // 0.9 m + 0.1 g with m ~ 1e-2, g ~ 1e-1).
      const bool ok = std::fabs(pp[i] - want.param) <= 1e-7 + 1e-6 * std::fabs(want.param) &&
                      std::fabs(mm[i] - want.m) <= 2e-9 + 1e-6 * std::fabs(want.m) &&
                      std::fabs(vv[i] - want.v) <= 2e-11 + 1e-6 * std::fabs(want.v) &&
                      copy16[i] == FloatToBf16(pp[i]);
      if (!ok && bad++ < 3) {
        ADD_FAILURE() << "element " << i << ": param " << pp[i] << " want " << want.param
                      << ", m " << mm[i] << " want " << want.m << ", v " << vv[i] << " want "
                      << want.v;
      }
    }
    EXPECT_EQ(bad, 0u);
  }
}

// The decay mask: element i decays iff its granule's byte (counted from mask_origin) is
// set; the rest of the update is the same as without decay.
TEST_F(CpuBackendTest, AdamWDecayMaskSelectsWhichGranulesDecay) {
  const int64_t G = kAdamWDecayGranule, n = 5 * G - 3, origin = 2 * G + 5;
  const std::vector<uint8_t> mask = {0, 1, 0, 1, 1, 0, 1, 0};  // granules of the buffer
  std::vector<float> grad = RandomFloats(n, rng_);
  std::vector<float> masked = RandomFloats(n, rng_), m1(n, 0.0f), v1(n, 0.0f);
  std::vector<float> decayed = masked, m2(n, 0.0f), v2(n, 0.0f);
  std::vector<float> plain = masked, m3(n, 0.0f), v3(n, 0.0f);
  AdamWParams p;
  p.lr = 0.01f;
  p.weight_decay = 0.5f;
  p.step = 1;
  AdamWParams pm = p;
  pm.decay_mask = mask.data();
  pm.mask_origin = origin;
  cpu_->AdamW(View(masked.data(), n), View(grad.data(), n), m1.data(), v1.data(), View(), n, pm);
  cpu_->AdamW(View(decayed.data(), n), View(grad.data(), n), m2.data(), v2.data(), View(), n, p);
  AdamWParams p0 = p;
  p0.weight_decay = 0.0f;
  cpu_->AdamW(View(plain.data(), n), View(grad.data(), n), m3.data(), v3.data(), View(), n, p0);
  int decaying = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool decays = mask[(origin + i) / G] != 0;
    decaying += decays;
    EXPECT_EQ(masked[i], decays ? decayed[i] : plain[i]) << "element " << i;
    EXPECT_EQ(m1[i], m2[i]);
  }
  EXPECT_GT(decaying, 0);
  EXPECT_LT(decaying, n);
}

TEST_F(CpuBackendTest, AdamWFirstStepMovesEachParameterByLr) {
  // From m = v = 0 at step 1, mhat / sqrt(vhat) = sign(g): every parameter moves by lr
  // against its gradient, plus the decay. A classic check that bias correction is right.
  const size_t n = 101;
  AdamWParams p;
  p.lr = 0.01f;
  p.weight_decay = 0.0f;
  p.step = 1;
  std::vector<float> param = RandomFloats(n, rng_), m(n, 0.0f), v(n, 0.0f);
  const std::vector<float> grad = RandomFloats(n, rng_);
  std::vector<float> updated = param;
  cpu_->AdamW(View(updated.data(), n), View(const_cast<float*>(grad.data()), n), m.data(),
              v.data(), View(), n, p);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(updated[i], param[i] - 0.01 * (grad[i] > 0 ? 1 : -1), 1e-6) << i;
  }
}

// ---- threads -------------------------------------------------------------------------------

// Every op once on `be`, each on its own random inputs drawn from `seed` (backward ops
// after their forward, for the saved statistics). Returns every output by name.
// Sizes are large enough for the ops' parallel paths.
using Outputs = std::vector<std::pair<std::string, std::vector<float>>>;
Outputs RunEveryOp(Backend& be, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int B = 4, T = 130, C = 64, NH = 4, V = 61, Vp = 64;
  const int64_t N = static_cast<int64_t>(B) * T;
  auto r = [&](int64_t n) { return RandomFloats(static_cast<size_t>(n), rng); };
  auto z = [](int64_t n) { return std::vector<float>(static_cast<size_t>(n), 0.0f); };
  auto V_ = [](std::vector<float>& v) { return View(v.data(), static_cast<int64_t>(v.size())); };
  Outputs o;

  const auto tokens = UniformInts(N, rng, 0, Vp - 1);
  auto wte = r(Vp * C), wpe = r(T * C), emb = z(N * C), demb = r(N * C);
  auto dwte = r(Vp * C), dwpe = r(T * C);
  be.EmbeddingForward(V_(emb), tokens.data(), V_(wte), V_(wpe), B, T, C);
  be.EmbeddingBackward(V_(dwte), V_(dwpe), V_(demb), tokens.data(), B, T, C);
  o.insert(o.end(), {{"embedding out", emb}, {"dwte", dwte}, {"dwpe", dwpe}});

  auto x = r(N * C), lnw = r(C), lnb = r(C), ln = z(N * C), mean = z(N), rstd = z(N);
  auto dln = r(N * C), dx = r(N * C), dlnw = r(C), dlnb = r(C);
  be.LayerNormForward(V_(ln), mean.data(), rstd.data(), V_(x), V_(lnw), V_(lnb), N, C);
  be.LayerNormBackward(V_(dx), V_(dlnw), V_(dlnb), V_(dln), V_(x), V_(lnw), mean.data(),
                       rstd.data(), N, C);
  o.insert(o.end(), {{"layernorm out", ln}, {"mean", mean}, {"rstd", rstd},
                     {"layernorm dinp", dx}, {"layernorm dweight", dlnw}, {"dbias", dlnb}});

  auto w = r(3 * C * C), bias = r(3 * C), mm = z(N * 3 * C), dmm = r(N * 3 * C);
  auto dmx = z(N * C), dw = r(3 * C * C), dbias = r(3 * C);
  be.MatmulForward(V_(mm), V_(x), V_(w), V_(bias), N, C, 3 * C);
  be.MatmulBackward(V_(dmx), V_(dw), V_(dbias), V_(dmm), V_(x), V_(w), N, C, 3 * C);
  o.insert(o.end(), {{"matmul out", mm}, {"matmul dinp", dmx}, {"matmul dweight", dw},
                     {"matmul dbias", dbias}});

  auto qkv = r(N * 3 * C), att = z(N * C), lse = z(B * NH * T), datt = r(N * C);
  auto dqkv = z(N * 3 * C);
  be.AttentionForward(V_(att), lse.data(), V_(qkv), B, T, C, NH);
  be.AttentionBackward(V_(dqkv), V_(datt), V_(qkv), V_(att), lse.data(), B, T, C, NH);
  o.insert(o.end(), {{"attention out", att}, {"attention lse", lse}, {"dqkv", dqkv}});

  auto g = r(N * C), gelu = z(N * C), dg = r(N * C), dgi = z(N * C);
  be.GeluForward(V_(gelu), V_(g), N * C);
  be.GeluBackward(V_(dgi), V_(g), V_(dg), N * C);
  be.Add(V_(dg), V_(dg), V_(gelu), N * C);
  be.Accumulate(V_(dgi), V_(g), N * C);
  o.insert(o.end(), {{"gelu out", gelu}, {"gelu dinp + inp", dgi}, {"add", dg}});

  const auto targets = UniformInts(N, rng, -1, V - 1);
  auto logits = r(N * Vp), losses = z(N), ce_lse = z(N), dlogits = z(N * Vp);
  be.CrossEntropyForward(losses.data(), ce_lse.data(), V_(logits), targets.data(), N, V, Vp);
  be.CrossEntropyBackward(V_(dlogits), V_(logits), ce_lse.data(), targets.data(), 1.0f / N, N,
                          V, Vp);
  o.insert(o.end(), {{"losses", losses}, {"ce lse", ce_lse}, {"dlogits", dlogits}});

  auto param = r(N * C), grad = r(N * C), m = z(N * C), v = z(N * C), norm = z(1);
  be.SumSquares(norm.data(), V_(grad), N * C);
  AdamWParams p;
  p.lr = 1e-3f;
  p.weight_decay = 0.1f;
  be.AdamW(V_(param), V_(grad), m.data(), v.data(), View(), N * C, p);
  o.insert(o.end(), {{"sum of squares", norm}, {"adamw param", param}, {"adamw m", m},
                     {"adamw v", v}});
  return o;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST_F(CpuBackendTest, ResultsAreBitwiseReproducible) {
  const Outputs first = RunEveryOp(*MakeCpuBackend(2), seed_);
  const Outputs second = RunEveryOp(*MakeCpuBackend(2), seed_);
  for (size_t k = 0; k < first.size(); ++k) {
    EXPECT_TRUE(SameBits(first[k].second, second[k].second)) << first[k].first;
  }
}

// Everything but the Linear GEMMs, which OpenBLAS splits by thread count, gives the same
// bits on any number of threads (ops.h, "Determinism").
TEST_F(CpuBackendTest, ResultsOutsideBlasAreIndependentOfThreadCount) {
  const Outputs one = RunEveryOp(*MakeCpuBackend(1), seed_);
  for (int threads : {2, 3}) {
    const Outputs many = RunEveryOp(*MakeCpuBackend(threads), seed_);
    for (size_t k = 0; k < one.size(); ++k) {
      const std::string& name = one[k].first;
      if (name == "matmul out" || name == "matmul dinp" || name == "matmul dweight") continue;
      EXPECT_TRUE(SameBits(one[k].second, many[k].second))
          << name << " differs between 1 and " << threads << " threads";
    }
  }
}

TEST_F(CpuBackendTest, RestoresTheCallersThreadCount) {
  omp_set_num_threads(2);
  std::vector<float> a(10, 1.0f), b(10, 2.0f);
  MakeCpuBackend(3)->Add(View(a.data(), 10), View(a.data(), 10), View(b.data(), 10), 10);
  EXPECT_EQ(omp_get_max_threads(), 2);
  EXPECT_EQ(a, std::vector<float>(10, 3.0f));
}

// ---- empty inputs and misuse -----------------------------------------------------------------

TEST_F(CpuBackendTest, EmptyViewsAndZeroSizesAreFine) {
  const View none;
  cpu_->EmbeddingForward(none, nullptr, none, none, 0, 0, 0);
  cpu_->LayerNormForward(none, nullptr, nullptr, none, none, none, 0, 0);
  cpu_->MatmulForward(none, none, none, none, 0, 0, 0);
  cpu_->MatmulBackward(none, none, none, none, none, none, 0, 0, 0);
  cpu_->AttentionForward(none, nullptr, none, 0, 0, 8, 2);
  cpu_->AttentionBackward(none, none, none, none, nullptr, 0, 0, 8, 2);
  cpu_->GeluForward(none, none, 0);
  cpu_->Add(none, none, none, 0);
  cpu_->CrossEntropyForward(nullptr, nullptr, none, nullptr, 0, 5, 8);
  cpu_->CrossEntropyBackward(none, none, nullptr, nullptr, 1.0f, 0, 5, 8);
  float sum = 1.0f;
  cpu_->SumSquares(&sum, none, 0);
  EXPECT_EQ(sum, 1.0f);
  cpu_->AdamW(none, none, nullptr, nullptr, none, 0, AdamWParams{});
  cpu_->Cast(none, none, 0);
}

class CpuBackendDeathTest : public CpuBackendTest {
 protected:
  // The ops run OpenMP threads; fork-based death tests are unsafe with threads around.
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(CpuBackendDeathTest, MisuseAbortsNamingTheOpAndTheArgument) {
  std::vector<float> f(64, 0.0f), stats(8);
  std::vector<uint16_t> h(64);
  std::vector<double> d(64);
  const View f32(f.data(), 64), bf16(h.data(), DType::kBF16, 64), f64(d.data(), 64);
  EXPECT_DEATH(cpu_->MatmulForward(f32, f32, bf16, View(), 2, 4, 4),
               "MatmulForward: weight has dtype bf16");
  EXPECT_DEATH(cpu_->LayerNormForward(f32, stats.data(), stats.data(), f64, f32, f32, 2, 4),
               "LayerNormForward: inp has dtype f64");
  EXPECT_DEATH(cpu_->GeluForward(View(f.data(), 5), f32, 6), "GeluForward: out has 5 elements");
  EXPECT_DEATH(cpu_->AttentionForward(f32, stats.data(), f32, 1, 2, 6, 4),
               "AttentionForward: need NH > 0 dividing C");
  EXPECT_DEATH(cpu_->MatmulBackward(View(), f32, View(), f32, f32, f32, 2, 4, 4),
               "MatmulBackward: dinp is absent");
  EXPECT_DEATH(cpu_->LayerNormForward(f32, nullptr, stats.data(), f32, f32, f32, 2, 4),
               "LayerNormForward: mean is null");
  const std::vector<int32_t> tokens = {1, 2, 3, 16};  // wte [16, 4]: token 16 is out of range
  EXPECT_DEATH(cpu_->EmbeddingForward(View(f.data(), 16), tokens.data(), f32, f32, 1, 4, 4),
               "EmbeddingForward: tokens\\[3\\] = 16 is outside \\[0, Vp = 16\\)");
  const std::vector<int32_t> targets = {0, 7};
  EXPECT_DEATH(cpu_->CrossEntropyForward(stats.data(), stats.data(), f32, targets.data(), 2, 7,
                                         8),
               "targets\\[1\\] = 7 is not below V = 7");
  EXPECT_DEATH(cpu_->Cast(View(f.data(), DType::kI32, 64), f32, 64), "Cast: out has dtype i32");
  EXPECT_DEATH(cpu_->AdamW(f32, View(f.data(), DType::kI32, 64), f.data(), f.data(), View(), 64,
                           AdamWParams{}),
               "AdamW: grad has dtype i32");
}

}  // namespace
}  // namespace colossus::kernels
