// The CUDA backend's transformer ops against the CPU reference, on fresh random inputs
// at several shapes, ragged ones included (C not a multiple of the vector width, odd
// vocabularies with Vp padding, N not a multiple of any tile), on both dtype paths:
//   f32: every view f32, within 1e-5 relative (||gpu - cpu|| / ||cpu||);
//   bf16: bf16 activations and weights, f32 parameter gradients, within 2e-2.
// The CPU gets the very values the GPU holds (bf16 inputs rounded first), so the
// tolerance measures the arithmetic alone. Every output starts poisoned with NaN;
// parameter gradients start random and are compared by their increments (+=).
// Without a GPU every test here skips, naming the CUDA error; the emulation build
// (cuda_test_util.h) runs them on the CPU instead.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "colossus/kernels/backend.h"
#include "kernels/cuda_test_util.h"

namespace colossus::kernels::testing {
namespace {

View HostView(std::vector<float>& v) { return View(v.data(), static_cast<int64_t>(v.size())); }

// (after - before) of the GPU against (after - before) of the CPU: the part an op
// added to an accumulating (+=) f32 gradient.
void ExpectIncrementClose(const std::string& what, const std::vector<float>& gpu_after,
                          const std::vector<float>& cpu_after, const std::vector<float>& before,
                          double rtol) {
  ASSERT_EQ(gpu_after.size(), before.size());
  ASSERT_EQ(cpu_after.size(), before.size());
  std::vector<float> g(before.size()), c(before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    g[i] = gpu_after[i] - before[i];
    c[i] = cpu_after[i] - before[i];
  }
  ExpectRelativeClose(what + " (increment)", g, c, rtol);
}

class CudaOpsTest : public CudaTest, public ::testing::WithParamInterface<DtypePath> {
 protected:
  DType act() const { return GetParam().act; }
  double rtol() const { return GetParam().rtol; }
  // Random values the activation dtype can hold exactly.
  std::vector<float> Act(size_t n, double lo = -1, double hi = 1) {
    return Quantize(RandomFloats(n, rng_, lo, hi), act());
  }
};

INSTANTIATE_TEST_SUITE_P(Paths, CudaOpsTest, ::testing::Values(kF32Path, kBf16Path),
                         [](const ::testing::TestParamInfo<DtypePath>& info) {
                           return PathName(info.param);
                         });

// ---- embedding ------------------------------------------------------------------------------

TEST_P(CudaOpsTest, Embedding) {
  struct Shape {
    int B, T, C, maxT, Vp;
  };
  for (const Shape s : {Shape{2, 37, 72, 40, 101}, Shape{3, 64, 136, 64, 50},
                        Shape{1, 5, 35, 9, 7}, Shape{4, 33, 768, 33, 257}}) {
    SCOPED_TRACE(absl::StrCat("B=", s.B, " T=", s.T, " C=", s.C, " Vp=", s.Vp));
    const int64_t BT = int64_t{s.B} * s.T;
    std::vector<float> wte = Act(int64_t{s.Vp} * s.C), wpe = Act(int64_t{s.maxT} * s.C);
    const std::vector<int32_t> tokens = UniformInts(BT, rng_, 0, s.Vp - 1);
    std::vector<float> ref(BT * s.C);
    cpu_->EmbeddingForward(HostView(ref), tokens.data(), HostView(wte), HostView(wpe), s.B, s.T,
                           s.C);
    auto g_wte = Gpu(wte, act()), g_wpe = Gpu(wpe, act());
    auto g_tokens = GpuInts(tokens);
    auto g_out = GpuPoisoned(BT * s.C, act());
    gpu_->EmbeddingForward(g_out->view(), g_tokens->i32(), g_wte->view(), g_wpe->view(), s.B,
                           s.T, s.C);
    ExpectRelativeClose("out", g_out->Download(), ref, rtol());

    std::vector<float> dout = Act(BT * s.C);
    const std::vector<float> dwte0 = RandomFloats(wte.size(), rng_, -1, 1);
    const std::vector<float> dwpe0 = RandomFloats(wpe.size(), rng_, -1, 1);
    std::vector<float> dwte = dwte0, dwpe = dwpe0;
    cpu_->EmbeddingBackward(HostView(dwte), HostView(dwpe), HostView(dout), tokens.data(), s.B,
                            s.T, s.C);
    auto g_dout = Gpu(dout, act());
    auto g_dwte = Gpu(dwte0, DType::kF32), g_dwpe = Gpu(dwpe0, DType::kF32);
    gpu_->EmbeddingBackward(g_dwte->view(), g_dwpe->view(), g_dout->view(), g_tokens->i32(), s.B,
                            s.T, s.C);
    ExpectIncrementClose("dwte", g_dwte->Download(), dwte, dwte0, rtol());
    // Rows of wpe beyond T are untouched.
    ExpectIncrementClose("dwpe", g_dwpe->Download(), dwpe, dwpe0, rtol());
  }
}

// ---- layernorm ------------------------------------------------------------------------------

struct LnShape {
  int64_t N;
  int C;
};
const LnShape kLnShapes[] = {{1, 72}, {37, 136}, {300, 768}, {19, 35}, {64, 1600}, {5, 8}};

TEST_P(CudaOpsTest, LayerNormForwardAndBackward) {
  for (const LnShape s : kLnShapes) {
    SCOPED_TRACE(absl::StrCat("N=", s.N, " C=", s.C));
    const int64_t NC = s.N * s.C;
    // An offset mean: the two-pass variance must not cancel.
    std::vector<float> x = Act(NC, -2, 3), w = Act(s.C, 0.5, 1.5), b = Act(s.C, -0.5, 0.5);
    std::vector<float> out(NC), mean(s.N), rstd(s.N);
    cpu_->LayerNormForward(HostView(out), mean.data(), rstd.data(), HostView(x), HostView(w),
                           HostView(b), s.N, s.C);
    auto g_x = Gpu(x, act()), g_w = Gpu(w, act()), g_b = Gpu(b, act());
    auto g_out = GpuPoisoned(NC, act());
    auto g_mean = GpuPoisoned(s.N, DType::kF32), g_rstd = GpuPoisoned(s.N, DType::kF32);
    gpu_->LayerNormForward(g_out->view(), g_mean->f32(), g_rstd->f32(), g_x->view(), g_w->view(),
                           g_b->view(), s.N, s.C);
    ExpectRelativeClose("out", g_out->Download(), out, rtol());
    ExpectRelativeClose("mean", g_mean->Download(), mean, 1e-5);
    ExpectRelativeClose("rstd", g_rstd->Download(), rstd, 1e-5);

    // dinp accumulates (the residual stream's gradient): start it small and random.
    std::vector<float> dout = Act(NC);
    const std::vector<float> dinp0 = Act(NC, -0.1, 0.1);
    const std::vector<float> dw0 = RandomFloats(s.C, rng_, -1, 1);
    const std::vector<float> db0 = RandomFloats(s.C, rng_, -1, 1);
    std::vector<float> dinp = dinp0, dw = dw0, db = db0;
    cpu_->LayerNormBackward(HostView(dinp), HostView(dw), HostView(db), HostView(dout),
                            HostView(x), HostView(w), mean.data(), rstd.data(), s.N, s.C);
    auto g_dout = Gpu(dout, act()), g_dinp = Gpu(dinp0, act());
    auto g_dw = Gpu(dw0, DType::kF32), g_db = Gpu(db0, DType::kF32);
    // The GPU's own statistics: what a training step would pass.
    gpu_->LayerNormBackward(g_dinp->view(), g_dw->view(), g_db->view(), g_dout->view(),
                            g_x->view(), g_w->view(), g_mean->f32(), g_rstd->f32(), s.N, s.C);
    ExpectRelativeClose("dinp", g_dinp->Download(), dinp, rtol());
    ExpectIncrementClose("dweight", g_dw->Download(), dw, dw0, rtol());
    ExpectIncrementClose("dbias", g_db->Download(), db, db0, rtol());
  }
}

TEST_P(CudaOpsTest, ResidualLayerNormForwardMatchesAddThenLayerNorm) {
  for (const LnShape s : kLnShapes) {
    for (const bool in_place : {false, true}) {
      SCOPED_TRACE(absl::StrCat("N=", s.N, " C=", s.C, in_place ? " residual aliases a" : ""));
      const int64_t NC = s.N * s.C;
      std::vector<float> a = Act(NC, -2, 2), b = Act(NC), w = Act(s.C, 0.5, 1.5),
                         bias = Act(s.C, -0.5, 0.5);
      std::vector<float> residual(NC), out(NC), mean(s.N), rstd(s.N);
      cpu_->ResidualLayerNormForward(HostView(residual), HostView(out), mean.data(), rstd.data(),
                                     HostView(a), HostView(b), HostView(w), HostView(bias), s.N,
                                     s.C);
      auto g_a = Gpu(a, act()), g_b = Gpu(b, act()), g_w = Gpu(w, act()),
           g_bias = Gpu(bias, act());
      auto g_residual = GpuPoisoned(NC, act());
      auto g_out = GpuPoisoned(NC, act());
      auto g_mean = GpuPoisoned(s.N, DType::kF32), g_rstd = GpuPoisoned(s.N, DType::kF32);
      const View residual_view = in_place ? g_a->view() : g_residual->view();
      gpu_->ResidualLayerNormForward(residual_view, g_out->view(), g_mean->f32(), g_rstd->f32(),
                                     g_a->view(), g_b->view(), g_w->view(), g_bias->view(), s.N,
                                     s.C);
      std::vector<float> g_res = (in_place ? g_a : g_residual)->Download();
      ExpectRelativeClose("residual", g_res, residual, rtol());
      ExpectRelativeClose("out", g_out->Download(), out, rtol());
      // The statistics are those of the residual as stored (rounded to bf16 on that
      // path), so the reference normalizes the GPU's own residual. Against the f32 sum
      // a mean near zero would carry the rounding of C terms as a large relative error.
      std::vector<float> out_r(NC), mean_r(s.N), rstd_r(s.N);
      cpu_->LayerNormForward(HostView(out_r), mean_r.data(), rstd_r.data(), HostView(g_res),
                             HostView(w), HostView(bias), s.N, s.C);
      // A mean is a difference of near-equal sums: its error is judged against the
      // row's scale (its RMS), not against itself.
      const std::vector<float> g_mean_h = g_mean->Download();
      for (int64_t r = 0; r < s.N; ++r) {
        double ms = 0;
        for (int c = 0; c < s.C; ++c) ms += double(g_res[r * s.C + c]) * g_res[r * s.C + c];
        const double rms = std::sqrt(ms / s.C);
        ASSERT_LE(std::fabs(g_mean_h[r] - mean_r[r]), 1e-5 * rms)
            << "mean of row " << r << ": " << g_mean_h[r] << " vs " << mean_r[r];
      }
      ExpectRelativeClose("rstd", g_rstd->Download(), rstd_r, 1e-5);
    }
  }
}

// ---- matmul ---------------------------------------------------------------------------------

struct MmShape {
  int64_t N;
  int C, OC;
  bool bias;
};
const MmShape kMmShapes[] = {{37, 72, 136, true},  {64, 768, 288, true}, {5, 35, 19, true},
                             {1, 8, 8, false},     {130, 136, 72, false}, {257, 64, 2304, true}};

TEST_P(CudaOpsTest, MatmulForwardAndBackward) {
  for (const MmShape s : kMmShapes) {
    SCOPED_TRACE(absl::StrCat("N=", s.N, " C=", s.C, " OC=", s.OC, s.bias ? " bias" : ""));
    std::vector<float> x = Act(s.N * s.C), w = Act(int64_t{s.OC} * s.C, -0.2, 0.2),
                       b = Act(s.OC, -0.5, 0.5);
    std::vector<float> out(s.N * s.OC);
    cpu_->MatmulForward(HostView(out), HostView(x), HostView(w), s.bias ? HostView(b) : View(),
                        s.N, s.C, s.OC);
    auto g_x = Gpu(x, act()), g_w = Gpu(w, act()), g_b = Gpu(b, act());
    auto g_out = GpuPoisoned(s.N * s.OC, act());
    gpu_->MatmulForward(g_out->view(), g_x->view(), g_w->view(), s.bias ? g_b->view() : View(),
                        s.N, s.C, s.OC);
    ExpectRelativeClose("out", g_out->Download(), out, rtol());

    std::vector<float> dout = Act(s.N * s.OC);
    const std::vector<float> dw0 = RandomFloats(w.size(), rng_, -1, 1);
    const std::vector<float> db0 = RandomFloats(s.OC, rng_, -1, 1);
    std::vector<float> dinp(s.N * s.C), dw = dw0, db = db0;
    cpu_->MatmulBackward(HostView(dinp), HostView(dw), s.bias ? HostView(db) : View(),
                         HostView(dout), HostView(x), HostView(w), s.N, s.C, s.OC);
    auto g_dout = Gpu(dout, act());
    auto g_dinp = GpuPoisoned(s.N * s.C, act());
    auto g_dw = Gpu(dw0, DType::kF32), g_db = Gpu(db0, DType::kF32);
    gpu_->MatmulBackward(g_dinp->view(), g_dw->view(), s.bias ? g_db->view() : View(),
                         g_dout->view(), g_x->view(), g_w->view(), s.N, s.C, s.OC);
    ExpectRelativeClose("dinp", g_dinp->Download(), dinp, rtol());
    ExpectIncrementClose("dweight", g_dw->Download(), dw, dw0, rtol());
    if (s.bias) {
      ExpectIncrementClose("dbias", g_db->Download(), db, db0, rtol());
    } else {
      EXPECT_EQ(g_db->Download(), db0) << "dbias absent, yet written";
    }
  }
}

TEST_P(CudaOpsTest, MatmulGeluForwardMatchesMatmulThenGelu) {
  // OC = 100 is not a multiple of 8: the bf16 epilogue cannot take it, the fallback must.
  for (const MmShape s : {MmShape{37, 72, 288, true}, MmShape{33, 64, 100, true},
                          MmShape{16, 136, 136, false}, MmShape{256, 768, 3072, true}}) {
    SCOPED_TRACE(absl::StrCat("N=", s.N, " C=", s.C, " OC=", s.OC, s.bias ? " bias" : ""));
    std::vector<float> x = Act(s.N * s.C, -2, 2), w = Act(int64_t{s.OC} * s.C, -0.2, 0.2),
                       b = Act(s.OC, -0.5, 0.5);
    std::vector<float> out(s.N * s.OC), pre(s.N * s.OC);
    cpu_->MatmulGeluForward(HostView(out), HostView(pre), HostView(x), HostView(w),
                            s.bias ? HostView(b) : View(), s.N, s.C, s.OC);
    auto g_x = Gpu(x, act()), g_w = Gpu(w, act()), g_b = Gpu(b, act());
    auto g_out = GpuPoisoned(s.N * s.OC, act()), g_pre = GpuPoisoned(s.N * s.OC, act());
    gpu_->MatmulGeluForward(g_out->view(), g_pre->view(), g_x->view(), g_w->view(),
                            s.bias ? g_b->view() : View(), s.N, s.C, s.OC);
    ExpectRelativeClose("pre_gelu", g_pre->Download(), pre, rtol());
    ExpectRelativeClose("out", g_out->Download(), out, rtol());
  }
}

// ---- GELU -------------------------------------------------------------------------------------

TEST_P(CudaOpsTest, Gelu) {
  for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{4099}, int64_t{65537}}) {
    SCOPED_TRACE(absl::StrCat("n=", n));
    std::vector<float> x = Act(n, -6, 6), dout = Act(n);
    std::vector<float> out(n), dinp(n);
    cpu_->GeluForward(HostView(out), HostView(x), n);
    cpu_->GeluBackward(HostView(dinp), HostView(x), HostView(dout), n);
    auto g_x = Gpu(x, act()), g_dout = Gpu(dout, act());
    auto g_out = GpuPoisoned(n, act()), g_dinp = GpuPoisoned(n, act());
    gpu_->GeluForward(g_out->view(), g_x->view(), n);
    gpu_->GeluBackward(g_dinp->view(), g_x->view(), g_dout->view(), n);
    ExpectRelativeClose("out", g_out->Download(), out, rtol());
    ExpectRelativeClose("dinp", g_dinp->Download(), dinp, rtol());
    // In place (out aliases inp), as the CPU allows.
    gpu_->GeluForward(g_x->view(), g_x->view(), n);
    ExpectRelativeClose("out in place", g_x->Download(), out, rtol());
  }
}

TEST_P(CudaOpsTest, MisalignedViewsTakeTheScalarPath) {
  // Views one element into an allocation: not 16-byte aligned, so every vectorized kernel
  // must fall back to its element-by-element instantiation.
  const int64_t n = 1029;
  std::vector<float> x = Act(n + 1, -3, 3), dout = Act(n + 1);
  auto g_x = Gpu(x, act()), g_dout = Gpu(dout, act());
  auto g_out = GpuPoisoned(n + 1, act());
  const size_t es = DTypeSize(act());
  auto shifted = [&](const DeviceArray& a) {
    return View(static_cast<char*>(a.data()) + es, act(), n);
  };
  std::vector<float> xs(x.begin() + 1, x.end()), ref(n);
  cpu_->GeluForward(HostView(ref), HostView(xs), n);
  gpu_->GeluForward(shifted(*g_out), shifted(*g_x), n);
  std::vector<float> got = g_out->Download();
  EXPECT_TRUE(std::isnan(got[0])) << "the element before the view was written";
  got.erase(got.begin());
  ExpectRelativeClose("gelu", got, ref, rtol());

  // LayerNorm rows of C = 72 starting one element off.
  const int64_t N = 13;
  const int C = 72;
  std::vector<float> lx = Act(N * C + 1, -2, 2), w = Act(C + 1, 0.5, 1.5), b = Act(C + 1);
  auto g_lx = Gpu(lx, act()), g_w = Gpu(w, act()), g_b = Gpu(b, act());
  auto g_lout = GpuPoisoned(N * C + 1, act());
  auto g_mean = GpuPoisoned(N, DType::kF32), g_rstd = GpuPoisoned(N, DType::kF32);
  std::vector<float> lxs(lx.begin() + 1, lx.end()), ws(w.begin() + 1, w.end()),
      bs(b.begin() + 1, b.end()), lref(N * C), mean(N), rstd(N);
  cpu_->LayerNormForward(HostView(lref), mean.data(), rstd.data(), HostView(lxs), HostView(ws),
                         HostView(bs), N, C);
  auto shifted_n = [&](const DeviceArray& a, int64_t count) {
    return View(static_cast<char*>(a.data()) + es, act(), count);
  };
  gpu_->LayerNormForward(shifted_n(*g_lout, N * C), g_mean->f32(), g_rstd->f32(),
                         shifted_n(*g_lx, N * C), shifted_n(*g_w, C), shifted_n(*g_b, C), N, C);
  std::vector<float> lgot = g_lout->Download();
  lgot.erase(lgot.begin());
  ExpectRelativeClose("layernorm", lgot, lref, rtol());
}

// ---- cross-entropy -------------------------------------------------------------------------

TEST_P(CudaOpsTest, CrossEntropyWithPaddingAndIgnoredRows) {
  struct Shape {
    int64_t N;
    int V, Vp;
  };
  for (const Shape s : {Shape{37, 101, 104}, Shape{5, 37, 37}, Shape{64, 1000, 1024},
                        Shape{8, 50257, 50304}, Shape{3, 1, 8}}) {
    for (const bool in_place : {false, true}) {
      SCOPED_TRACE(absl::StrCat("N=", s.N, " V=", s.V, " Vp=", s.Vp,
                                in_place ? " dlogits aliases logits" : ""));
      const int64_t NVp = s.N * s.Vp;
      std::vector<float> logits = Act(NVp, -4, 4);
      // Padding columns hold garbage a kernel must not read into the softmax.
      for (int64_t i = 0; i < s.N; ++i) {
        for (int j = s.V; j < s.Vp; ++j) logits[i * s.Vp + j] = 1000.0f;
      }
      std::vector<int32_t> targets = UniformInts(s.N, rng_, 0, s.V - 1);
      for (int64_t i = 0; i < s.N; i += 4) targets[i] = -1;  // ignored rows
      std::vector<float> losses(s.N), lse(s.N), dlogits(NVp);
      const float dloss = 1.0f / static_cast<float>(s.N);
      cpu_->CrossEntropyForward(losses.data(), lse.data(), HostView(logits), targets.data(), s.N,
                                s.V, s.Vp);
      cpu_->CrossEntropyBackward(HostView(dlogits), HostView(logits), lse.data(), targets.data(),
                                 dloss, s.N, s.V, s.Vp);
      auto g_logits = Gpu(logits, act());
      auto g_targets = GpuInts(targets);
      auto g_losses = GpuPoisoned(s.N, DType::kF32), g_lse = GpuPoisoned(s.N, DType::kF32);
      gpu_->CrossEntropyForward(g_losses->f32(), g_lse->f32(), g_logits->view(), g_targets->i32(),
                                s.N, s.V, s.Vp);
      ExpectRelativeClose("losses", g_losses->Download(), losses, act() == DType::kF32 ? 1e-5 : rtol());
      ExpectRelativeClose("lse", g_lse->Download(), lse, act() == DType::kF32 ? 1e-5 : rtol());
      std::unique_ptr<DeviceArray> g_dlogits;
      if (!in_place) g_dlogits = GpuPoisoned(NVp, act());
      const View dview = in_place ? g_logits->view() : g_dlogits->view();
      gpu_->CrossEntropyBackward(dview, g_logits->view(), g_lse->f32(), g_targets->i32(), dloss,
                                 s.N, s.V, s.Vp);
      const std::vector<float> got = (in_place ? g_logits : g_dlogits)->Download();
      ExpectRelativeClose("dlogits", got, dlogits, rtol());
      size_t nonzero_padding = 0;
      for (int64_t i = 0; i < s.N; ++i) {
        for (int j = s.V; j < s.Vp; ++j) nonzero_padding += got[i * s.Vp + j] != 0.0f;
      }
      EXPECT_EQ(nonzero_padding, 0u) << "padding columns must get exactly zero gradient";
    }
  }
}

// ---- attention (the kernels are attention*.cu; here: the backend's wiring) ------------------

TEST_P(CudaOpsTest, AttentionThroughTheBackend) {
  struct Shape {
    int B, T, C, NH;
  };
  // hs = 64 (bf16 takes the flash kernels), hs = 32 (the reference kernels), T ragged.
  for (const Shape s : {Shape{2, 64, 128, 2}, Shape{1, 100, 128, 2}, Shape{2, 37, 96, 3}}) {
    // Emulated, the f32 reference kernels take seconds at T = 100 (a warp reduction per
    // key); colossus_attention_emulation_test covers longer T there.
    if (kEmulatedCuda && s.T > 64) continue;
    SCOPED_TRACE(absl::StrCat("B=", s.B, " T=", s.T, " C=", s.C, " NH=", s.NH));
    const int64_t BTC = int64_t{s.B} * s.T * s.C;
    const int64_t BNT = int64_t{s.B} * s.NH * s.T;
    std::vector<float> qkv = Act(3 * BTC, -1, 1), dout = Act(BTC);
    std::vector<float> out(BTC), lse(BNT), dqkv(3 * BTC);
    cpu_->AttentionForward(HostView(out), lse.data(), HostView(qkv), s.B, s.T, s.C, s.NH);
    // Backward from the CPU's (unrounded) out is a bf16-tolerance difference only.
    auto g_qkv = Gpu(qkv, act()), g_dout = Gpu(dout, act());
    auto g_out = GpuPoisoned(BTC, act()), g_dqkv = GpuPoisoned(3 * BTC, act());
    auto g_lse = GpuPoisoned(BNT, DType::kF32);
    gpu_->AttentionForward(g_out->view(), g_lse->f32(), g_qkv->view(), s.B, s.T, s.C, s.NH);
    ExpectRelativeClose("out", g_out->Download(), out, rtol());
    ExpectRelativeClose("lse", g_lse->Download(), lse, act() == DType::kF32 ? 1e-5 : rtol());
    std::vector<float> out_gpu = g_out->Download();
    cpu_->AttentionBackward(HostView(dqkv), HostView(dout), HostView(qkv), HostView(out_gpu),
                            lse.data(), s.B, s.T, s.C, s.NH);
    gpu_->AttentionBackward(g_dqkv->view(), g_dout->view(), g_qkv->view(), g_out->view(),
                            g_lse->f32(), s.B, s.T, s.C, s.NH);
    ExpectRelativeClose("dqkv", g_dqkv->Download(), dqkv, rtol());
  }
}

// ---- the fused ops' reference: the CPU composes the unfused ones exactly ----------------------

TEST(CpuFusedOpsTest, FusedForwardsEqualTheirCompositions) {
  std::mt19937_64 rng(TestSeed());
  std::unique_ptr<Backend> cpu = MakeCpuBackend(2);
  EXPECT_EQ(cpu->compute_dtype(), DType::kF32);
  const int64_t N = 19;
  const int C = 40, OC = 24;
  std::vector<float> a = RandomFloats(N * C, rng, -2, 2), b = RandomFloats(N * C, rng, -1, 1),
                     w = RandomFloats(C, rng, 0.5, 1.5), bias = RandomFloats(C, rng, -1, 1);
  std::vector<float> residual(N * C), out(N * C), mean(N), rstd(N);
  cpu->ResidualLayerNormForward(HostView(residual), HostView(out), mean.data(), rstd.data(),
                                HostView(a), HostView(b), HostView(w), HostView(bias), N, C);
  std::vector<float> sum(N * C), out2(N * C), mean2(N), rstd2(N);
  cpu->Add(HostView(sum), HostView(a), HostView(b), N * C);
  cpu->LayerNormForward(HostView(out2), mean2.data(), rstd2.data(), HostView(sum), HostView(w),
                        HostView(bias), N, C);
  EXPECT_EQ(residual, sum);
  EXPECT_EQ(out, out2);
  EXPECT_EQ(mean, mean2);
  EXPECT_EQ(rstd, rstd2);

  std::vector<float> x = RandomFloats(N * C, rng, -1, 1), mw = RandomFloats(OC * C, rng, -1, 1),
                     mb = RandomFloats(OC, rng, -1, 1);
  std::vector<float> gelu(N * OC), pre(N * OC), pre2(N * OC), gelu2(N * OC);
  cpu->MatmulGeluForward(HostView(gelu), HostView(pre), HostView(x), HostView(mw), HostView(mb),
                         N, C, OC);
  cpu->MatmulForward(HostView(pre2), HostView(x), HostView(mw), HostView(mb), N, C, OC);
  cpu->GeluForward(HostView(gelu2), HostView(pre2), N * OC);
  EXPECT_EQ(pre, pre2);
  EXPECT_EQ(gelu, gelu2);
}

}  // namespace
}  // namespace colossus::kernels::testing
