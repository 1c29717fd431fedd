// The CPU reference ops (kernels/cpu/ops.h) against naive loops written here, and
// their backward passes against central finite differences in float64.
//
// Every test draws a fresh seed (printed with any failure; replay with
// COLOSSUS_TEST_SEED) and uses shapes that are multiples of nothing in particular.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu/ops.h"
#include "cpu/vec_math.h"
#include "kernels/gradcheck.h"

namespace colossus::kernels {
namespace {

using testing::Cast;
using testing::ExpectAllClose;
using testing::ExpectGradientMatches;
using testing::Poisoned;
using testing::SeededTest;
using testing::Uniform;
using testing::UniformInts;
using testing::WeightedSum;
using Vec = std::vector<double>;

bool AllFinite(const Vec& v) {
  for (double x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

Vec Plus(const Vec& a, const Vec& b) {
  Vec r(a.size());
  for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] + b[i];
  return r;
}

Vec Times(const Vec& a, double s) {
  Vec r(a.size());
  for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] * s;
  return r;
}

// ---- vectorizable exp -------------------------------------------------------

// One float ulp at the magnitude of `ref`.
double FloatUlp(double ref) { return std::ldexp(1.0, std::ilogb(static_cast<float>(ref)) - 23); }

TEST(VecMathTest, ExpIsWithinOneUlpOfStdExp) {
  double worst = 0, worst_x = 0;
  for (double xd = -87.3; xd < 88.3; xd += 3.1e-5) {
    const float x = static_cast<float>(xd);
    const double ref = std::exp(static_cast<double>(x));
    const double ulps = std::fabs(cpu::Exp(x) - ref) / FloatUlp(ref);
    if (ulps > worst) worst = ulps, worst_x = x;
  }
  EXPECT_LE(worst, 1.0) << "at x = " << worst_x;
}

TEST(VecMathTest, ExpSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(cpu::Exp(0.0f), 1.0f);
  EXPECT_EQ(cpu::Exp(-inf), 0.0f);  // a masked score contributes exactly nothing
  EXPECT_EQ(cpu::Exp(-100.0f), 0.0f);
  EXPECT_EQ(cpu::Exp(inf), inf);
  EXPECT_EQ(cpu::Exp(100.0f), inf);
  EXPECT_TRUE(std::isnan(cpu::Exp(std::numeric_limits<float>::quiet_NaN())));
}

// ---- embedding -------------------------------------------------------------------------

class EmbeddingTest : public SeededTest {};

TEST_F(EmbeddingTest, ForwardMatchesNaiveLoop) {
  const int B = 2, T = 7, C = 12, Vp = 11, maxT = 9;
  const auto tokens = UniformInts(B * T, rng_, 0, Vp - 1);
  const Vec wte = Uniform(Vp * C, rng_), wpe = Uniform(maxT * C, rng_);
  Vec expected(B * T * C);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c)
        expected[(b * T + t) * C + c] = wte[tokens[b * T + t] * C + c] + wpe[t * C + c];

  Vec out = Poisoned<double>(B * T * C);
  cpu::EmbeddingForward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  ExpectAllClose("out (f64)", out, expected, 0, 0);
  auto out32 = Poisoned<float>(B * T * C);
  const auto wte32 = Cast<float>(wte), wpe32 = Cast<float>(wpe);
  cpu::EmbeddingForward(out32.data(), tokens.data(), wte32.data(), wpe32.data(), B, T, C);
  ExpectAllClose("out (f32)", out32, expected, 1e-6, 1e-6);
}

TEST_F(EmbeddingTest, BackwardMatchesFiniteDifferencesAndAccumulates) {
  const int B = 3, T = 5, C = 19, Vp = 6;  // few tokens, so rows repeat
  const auto tokens = UniformInts(B * T, rng_, 0, Vp - 1);
  Vec wte = Uniform(Vp * C, rng_), wpe = Uniform(T * C, rng_);
  const Vec dout = Uniform(B * T * C, rng_);
  auto loss = [&] {
    Vec out(B * T * C);
    cpu::EmbeddingForward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    return WeightedSum(out, dout);
  };
  Vec dwte(Vp * C, 0.0), dwpe(T * C, 0.0);
  cpu::EmbeddingBackward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
  ExpectGradientMatches("wte", &wte, dwte, loss, rng_);
  ExpectGradientMatches("wpe", &wpe, dwpe, loss, rng_);

  // Parameter gradients accumulate: from g0, one more call adds the same gradient again.
  const Vec wte0 = Uniform(Vp * C, rng_), wpe0 = Uniform(T * C, rng_);
  Vec acc_wte = wte0, acc_wpe = wpe0;
  cpu::EmbeddingBackward(acc_wte.data(), acc_wpe.data(), dout.data(), tokens.data(), B, T, C);
  cpu::EmbeddingBackward(acc_wte.data(), acc_wpe.data(), dout.data(), tokens.data(), B, T, C);
  ExpectAllClose("dwte after two calls", acc_wte, Plus(wte0, Times(dwte, 2)), 1e-12, 1e-12);
  ExpectAllClose("dwpe after two calls", acc_wpe, Plus(wpe0, Times(dwpe, 2)), 1e-12, 1e-12);
}

// ---- layernorm -------------------------------------------------------------------------

struct LayerNormRef {
  Vec out, mean, rstd;
};
LayerNormRef NaiveLayerNorm(const Vec& x, const Vec& w, const Vec& b, int64_t N, int C) {
  LayerNormRef r{Vec(N * C), Vec(N), Vec(N)};
  for (int64_t i = 0; i < N; ++i) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[i * C + c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (x[i * C + c] - m) * (x[i * C + c] - m);
    v /= C;
    const double s = 1.0 / std::sqrt(v + 1e-5);
    for (int c = 0; c < C; ++c) r.out[i * C + c] = (x[i * C + c] - m) * s * w[c] + b[c];
    r.mean[i] = m;
    r.rstd[i] = s;
  }
  return r;
}

class LayerNormTest : public SeededTest {};

TEST_F(LayerNormTest, ForwardMatchesNaiveLoopInDoubleAndFloat) {
  const int64_t N = 13;
  const int C = 17;
  // An offset mean: a one-pass variance would lose digits here.
  Vec x = Uniform(N * C, rng_, 2.0, 4.0);
  const Vec w = Uniform(C, rng_, 0.5, 1.5), b = Uniform(C, rng_);
  const LayerNormRef ref = NaiveLayerNorm(x, w, b, N, C);

  Vec out = Poisoned<double>(N * C), mean = Poisoned<double>(N), rstd = Poisoned<double>(N);
  cpu::LayerNormForward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
  ExpectAllClose("out", out, ref.out, 1e-12, 1e-12);
  ExpectAllClose("mean", mean, ref.mean, 1e-12, 1e-12);
  ExpectAllClose("rstd", rstd, ref.rstd, 1e-12, 1e-12);

  const auto x32 = Cast<float>(x), w32 = Cast<float>(w), b32 = Cast<float>(b);
  const LayerNormRef ref32 = NaiveLayerNorm(Cast<double>(x32), Cast<double>(w32),
                                            Cast<double>(b32), N, C);
  auto out32 = Poisoned<float>(N * C), mean32 = Poisoned<float>(N), rstd32 = Poisoned<float>(N);
  cpu::LayerNormForward(out32.data(), mean32.data(), rstd32.data(), x32.data(), w32.data(),
                        b32.data(), N, C);
  ExpectAllClose("out (f32)", out32, ref32.out, 1e-5, 1e-5);
  ExpectAllClose("mean (f32)", mean32, ref32.mean, 1e-6, 1e-6);
  ExpectAllClose("rstd (f32)", rstd32, ref32.rstd, 1e-5, 1e-5);
}

TEST_F(LayerNormTest, BackwardMatchesFiniteDifferences) {
  const int64_t N = 13;
  const int C = 17;
  Vec x = Uniform(N * C, rng_, -2, 2), w = Uniform(C, rng_, 0.5, 1.5), b = Uniform(C, rng_);
  const Vec dout = Uniform(N * C, rng_);
  Vec out(N * C), mean(N), rstd(N);
  auto loss = [&] {
    cpu::LayerNormForward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(),
                          N, C);
    return WeightedSum(out, dout);
  };
  loss();
  Vec dx(N * C, 0.0), dw(C, 0.0), db(C, 0.0);
  cpu::LayerNormBackward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                         mean.data(), rstd.data(), N, C);
  ExpectGradientMatches("inp", &x, dx, loss, rng_);
  ExpectGradientMatches("weight", &w, dw, loss, rng_);
  ExpectGradientMatches("bias", &b, db, loss, rng_);
}

TEST_F(LayerNormTest, BackwardAccumulatesIntoDinpAndParameterGradients) {
  const int64_t N = 9;
  const int C = 23;
  const Vec x = Uniform(N * C, rng_), w = Uniform(C, rng_), b = Uniform(C, rng_);
  const Vec dout = Uniform(N * C, rng_);
  Vec out(N * C), mean(N), rstd(N);
  cpu::LayerNormForward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
  Vec dx(N * C, 0.0), dw(C, 0.0), db(C, 0.0);
  cpu::LayerNormBackward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                         mean.data(), rstd.data(), N, C);
  // dinp is the residual stream's gradient: it adds to what is there, as do dweight
  // and dbias. Two calls from random starting values add twice.
  const Vec dx0 = Uniform(N * C, rng_), dw0 = Uniform(C, rng_), db0 = Uniform(C, rng_);
  Vec adx = dx0, adw = dw0, adb = db0;
  for (int k = 0; k < 2; ++k) {
    cpu::LayerNormBackward(adx.data(), adw.data(), adb.data(), dout.data(), x.data(),
                           w.data(), mean.data(), rstd.data(), N, C);
  }
  ExpectAllClose("dinp", adx, Plus(dx0, Times(dx, 2)), 1e-12, 1e-12);
  ExpectAllClose("dweight", adw, Plus(dw0, Times(dw, 2)), 1e-12, 1e-12);
  ExpectAllClose("dbias", adb, Plus(db0, Times(db, 2)), 1e-12, 1e-12);
}

TEST_F(LayerNormTest, FloatAgreesWithDouble) {
  const int64_t N = 37;
  const int C = 45;
  const auto x = Cast<float>(Uniform(N * C, rng_, -3, 3)), w = Cast<float>(Uniform(C, rng_));
  const auto b = Cast<float>(Uniform(C, rng_)), dout = Cast<float>(Uniform(N * C, rng_));
  Vec out(N * C), mean(N), rstd(N), dx(N * C, 0.0), dw(C, 0.0), db(C, 0.0);
  const Vec xd = Cast<double>(x), wd = Cast<double>(w), bd = Cast<double>(b);
  const Vec doutd = Cast<double>(dout);
  cpu::LayerNormForward(out.data(), mean.data(), rstd.data(), xd.data(), wd.data(), bd.data(),
                        N, C);
  cpu::LayerNormBackward(dx.data(), dw.data(), db.data(), doutd.data(), xd.data(), wd.data(),
                         mean.data(), rstd.data(), N, C);
  std::vector<float> out32(N * C), mean32(N), rstd32(N), dx32(N * C, 0), dw32(C, 0), db32(C, 0);
  cpu::LayerNormForward(out32.data(), mean32.data(), rstd32.data(), x.data(), w.data(),
                        b.data(), N, C);
  cpu::LayerNormBackward(dx32.data(), dw32.data(), db32.data(), dout.data(), x.data(), w.data(),
                         mean32.data(), rstd32.data(), N, C);
  ExpectAllClose("out", out32, out, 1e-5, 1e-5);
  ExpectAllClose("dinp", dx32, dx, 1e-5, 1e-4);
  ExpectAllClose("dweight", dw32, dw, 1e-5, 1e-5);
  ExpectAllClose("dbias", db32, db, 1e-5, 1e-5);
}

// ---- matmul ----------------------------------------------------------------------------

Vec NaiveMatmul(const Vec& x, const Vec& w, const Vec* bias, int64_t N, int C, int OC) {
  Vec out(N * OC);
  for (int64_t i = 0; i < N; ++i)
    for (int o = 0; o < OC; ++o) {
      double s = bias != nullptr ? (*bias)[o] : 0.0;
      for (int c = 0; c < C; ++c) s += x[i * C + c] * w[o * C + c];
      out[i * OC + o] = s;
    }
  return out;
}

class MatmulTest : public SeededTest {};

TEST_F(MatmulTest, ForwardMatchesNaiveLoopWithAndWithoutBias) {
  const int64_t N = 13;
  const int C = 17, OC = 11;
  const Vec x = Uniform(N * C, rng_), w = Uniform(OC * C, rng_), b = Uniform(OC, rng_);
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    const Vec expected = NaiveMatmul(x, w, with_bias ? &b : nullptr, N, C, OC);
    Vec out = Poisoned<double>(N * OC);
    cpu::MatmulForward(out.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, C, OC);
    ExpectAllClose("out (f64)", out, expected, 1e-13, 1e-13);
    const auto x32 = Cast<float>(x), w32 = Cast<float>(w), b32 = Cast<float>(b);
    auto out32 = Poisoned<float>(N * OC);
    cpu::MatmulForward(out32.data(), x32.data(), w32.data(), with_bias ? b32.data() : nullptr,
                       N, C, OC);
    ExpectAllClose("out (f32)", out32, expected, 1e-5, 1e-5);
  }
}

TEST_F(MatmulTest, BackwardMatchesFiniteDifferences) {
  const int64_t N = 13;
  const int C = 17, OC = 11;
  Vec x = Uniform(N * C, rng_), w = Uniform(OC * C, rng_), b = Uniform(OC, rng_);
  const Vec dout = Uniform(N * OC, rng_);
  auto loss = [&] {
    Vec out(N * OC);
    cpu::MatmulForward(out.data(), x.data(), w.data(), b.data(), N, C, OC);
    return WeightedSum(out, dout);
  };
  // dinp starts poisoned: it is overwritten, never read.
  Vec dx = Poisoned<double>(N * C), dw(OC * C, 0.0), db(OC, 0.0);
  cpu::MatmulBackward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, C, OC);
  ExpectGradientMatches("inp", &x, dx, loss, rng_);
  ExpectGradientMatches("weight", &w, dw, loss, rng_);
  ExpectGradientMatches("bias", &b, db, loss, rng_);
}

TEST_F(MatmulTest, ParameterGradientsAccumulateAndDinpOverwrites) {
  const int64_t N = 29;
  const int C = 7, OC = 19;
  const Vec x = Uniform(N * C, rng_), w = Uniform(OC * C, rng_), dout = Uniform(N * OC, rng_);
  Vec dx(N * C), dw(OC * C, 0.0), db(OC, 0.0);
  cpu::MatmulBackward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, C, OC);
  const Vec dw0 = Uniform(OC * C, rng_), db0 = Uniform(OC, rng_);
  Vec adx = Uniform(N * C, rng_), adw = dw0, adb = db0;
  for (int k = 0; k < 2; ++k) {
    cpu::MatmulBackward(adx.data(), adw.data(), adb.data(), dout.data(), x.data(), w.data(), N,
                        C, OC);
  }
  ExpectAllClose("dinp", adx, dx, 1e-13, 1e-13);
  ExpectAllClose("dweight", adw, Plus(dw0, Times(dw, 2)), 1e-12, 1e-12);
  ExpectAllClose("dbias", adb, Plus(db0, Times(db, 2)), 1e-12, 1e-12);
  // Without a bias gradient the others are unchanged.
  Vec ndx(N * C), ndw(OC * C, 0.0);
  cpu::MatmulBackward<double>(ndx.data(), ndw.data(), nullptr, dout.data(), x.data(), w.data(),
                              N, C, OC);
  ExpectAllClose("dinp (no dbias)", ndx, dx, 0, 0);
  ExpectAllClose("dweight (no dbias)", ndw, dw, 0, 0);
}

TEST_F(MatmulTest, FloatAgreesWithDouble) {
  const int64_t N = 67;
  const int C = 45, OC = 71;
  const auto x = Cast<float>(Uniform(N * C, rng_)), w = Cast<float>(Uniform(OC * C, rng_));
  const auto b = Cast<float>(Uniform(OC, rng_)), dout = Cast<float>(Uniform(N * OC, rng_));
  const Vec xd = Cast<double>(x), wd = Cast<double>(w), bd = Cast<double>(b);
  const Vec doutd = Cast<double>(dout);
  Vec out(N * OC), dx(N * C), dw(OC * C, 0.0), db(OC, 0.0);
  cpu::MatmulForward(out.data(), xd.data(), wd.data(), bd.data(), N, C, OC);
  cpu::MatmulBackward(dx.data(), dw.data(), db.data(), doutd.data(), xd.data(), wd.data(), N, C,
                      OC);
  std::vector<float> out32(N * OC), dx32(N * C), dw32(OC * C, 0), db32(OC, 0);
  cpu::MatmulForward(out32.data(), x.data(), w.data(), b.data(), N, C, OC);
  cpu::MatmulBackward(dx32.data(), dw32.data(), db32.data(), dout.data(), x.data(), w.data(), N,
                      C, OC);
  ExpectAllClose("out", out32, out, 1e-5, 1e-5);
  ExpectAllClose("dinp", dx32, dx, 1e-5, 1e-5);
  ExpectAllClose("dweight", dw32, dw, 1e-5, 1e-5);
  ExpectAllClose("dbias", db32, db, 1e-5, 1e-5);
}

// ---- attention -------------------------------------------------------------------------

struct AttentionRef {
  Vec out, lse;
};
// Straight from the definition: full scores, masked, softmax, weighted sum of values.
AttentionRef NaiveAttention(const Vec& qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  AttentionRef r{Vec(static_cast<size_t>(B) * T * C), Vec(static_cast<size_t>(B) * NH * T)};
  auto at = [&](int b, int t, int which, int h, int c) {
    return qkv[((static_cast<size_t>(b) * T + t) * 3 + which) * C + h * hs + c];
  };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        Vec s(t + 1);
        double mx = -1e300;
        for (int j = 0; j <= t; ++j) {
          double d = 0;
          for (int c = 0; c < hs; ++c) d += at(b, t, 0, h, c) * at(b, j, 1, h, c);
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) sum += std::exp(s[j] - mx);
        r.lse[(static_cast<size_t>(b) * NH + h) * T + t] = mx + std::log(sum);
        for (int c = 0; c < hs; ++c) {
          double o = 0;
          for (int j = 0; j <= t; ++j) o += std::exp(s[j] - mx) / sum * at(b, j, 2, h, c);
          r.out[(static_cast<size_t>(b) * T + t) * C + h * hs + c] = o;
        }
      }
  return r;
}

class AttentionTest : public SeededTest {};

TEST_F(AttentionTest, ForwardMatchesNaiveLoop) {
  // T = 7 is inside one query block; T = 130 spans three, the last one partial.
  for (const int T : {7, 130}) {
    SCOPED_TRACE("T = " + std::to_string(T));
    const int B = 2, C = 12, NH = 3;
    const Vec qkv = Uniform(static_cast<size_t>(B) * T * 3 * C, rng_, -2, 2);
    const AttentionRef ref = NaiveAttention(qkv, B, T, C, NH);
    Vec out = Poisoned<double>(B * T * C), lse = Poisoned<double>(B * NH * T);
    cpu::AttentionForward(out.data(), lse.data(), qkv.data(), B, T, C, NH);
    ExpectAllClose("out (f64)", out, ref.out, 1e-12, 1e-12);
    ExpectAllClose("lse (f64)", lse, ref.lse, 1e-12, 1e-12);
    const auto qkv32 = Cast<float>(qkv);
    const AttentionRef ref32 = NaiveAttention(Cast<double>(qkv32), B, T, C, NH);
    auto out32 = Poisoned<float>(B * T * C), lse32 = Poisoned<float>(B * NH * T);
    cpu::AttentionForward(out32.data(), lse32.data(), qkv32.data(), B, T, C, NH);
    ExpectAllClose("out (f32)", out32, ref32.out, 1e-5, 1e-5);
    ExpectAllClose("lse (f32)", lse32, ref32.lse, 1e-5, 1e-5);
  }
}

TEST_F(AttentionTest, BackwardMatchesFiniteDifferences) {
  // The second shape crosses a query-block boundary (64) with a partial last block;
  // there a random subset of qkv is checked.
  struct Shape {
    int B, T, C, NH;
  };
  for (const Shape s : {Shape{2, 7, 12, 3}, Shape{1, 70, 10, 2}}) {
    SCOPED_TRACE("B=" + std::to_string(s.B) + " T=" + std::to_string(s.T));
    const size_t n_out = static_cast<size_t>(s.B) * s.T * s.C;
    Vec qkv = Uniform(3 * n_out, rng_, -1.5, 1.5);
    const Vec dout = Uniform(n_out, rng_);
    Vec out(n_out), lse(static_cast<size_t>(s.B) * s.NH * s.T);
    auto loss = [&] {
      cpu::AttentionForward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.C, s.NH);
      return WeightedSum(out, dout);
    };
    loss();
    Vec dqkv = Poisoned<double>(3 * n_out);
    cpu::AttentionBackward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), s.B,
                           s.T, s.C, s.NH);
    EXPECT_TRUE(AllFinite(dqkv)) << "an element of dqkv was not written";
    ExpectGradientMatches("qkv", &qkv, dqkv, loss, rng_);
  }
}

TEST_F(AttentionTest, FloatAgreesWithDouble) {
  const int B = 2, T = 75, C = 24, NH = 4;
  const size_t n_out = static_cast<size_t>(B) * T * C;
  const auto qkv = Cast<float>(Uniform(3 * n_out, rng_, -2, 2));
  const auto dout = Cast<float>(Uniform(n_out, rng_));
  const Vec qkvd = Cast<double>(qkv), doutd = Cast<double>(dout);
  Vec out(n_out), lse(B * NH * T), dqkv(3 * n_out);
  cpu::AttentionForward(out.data(), lse.data(), qkvd.data(), B, T, C, NH);
  cpu::AttentionBackward(dqkv.data(), doutd.data(), qkvd.data(), out.data(), lse.data(), B, T,
                         C, NH);
  std::vector<float> out32(n_out), lse32(B * NH * T), dqkv32(3 * n_out);
  cpu::AttentionForward(out32.data(), lse32.data(), qkv.data(), B, T, C, NH);
  cpu::AttentionBackward(dqkv32.data(), dout.data(), qkv.data(), out32.data(), lse32.data(), B,
                         T, C, NH);
  ExpectAllClose("out", out32, out, 1e-5, 1e-5);
  ExpectAllClose("lse", lse32, lse, 1e-5, 1e-5);
  ExpectAllClose("dqkv", dqkv32, dqkv, 2e-5, 1e-4);
}

// ---- GELU, Add, Accumulate --------------------------------------------------------------

double NaiveGelu(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

class ElementwiseTest : public SeededTest {};

TEST_F(ElementwiseTest, GeluForwardMatchesFormula) {
  const int64_t n = 1001;
  Vec x = Uniform(n, rng_, -6, 6);
  x[0] = 0, x[1] = 20, x[2] = -20, x[3] = -90, x[4] = 90;  // saturation, both sides
  Vec expected(n);
  for (int64_t i = 0; i < n; ++i) expected[i] = NaiveGelu(x[i]);
  Vec out = Poisoned<double>(n);
  cpu::GeluForward(out.data(), x.data(), n);
  ExpectAllClose("f64", out, expected, 1e-15, 1e-14);
  const auto x32 = Cast<float>(x);
  Vec expected32(n);
  for (int64_t i = 0; i < n; ++i) expected32[i] = NaiveGelu(x32[i]);
  auto out32 = Poisoned<float>(n);
  cpu::GeluForward(out32.data(), x32.data(), n);
  // Relative accuracy everywhere, tiny negative tails included (there the conditioning
  // of exp(-2u) costs a few ulps).
  ExpectAllClose("f32", out32, expected32, 1e-12, 1e-5);
  // In place.
  auto inplace = x32;
  cpu::GeluForward(inplace.data(), inplace.data(), n);
  ExpectAllClose("f32 in place", inplace, Cast<double>(out32), 0, 0);
}

TEST_F(ElementwiseTest, GeluBackwardMatchesFiniteDifferencesAndFloat) {
  const int64_t n = 157;
  Vec x = Uniform(n, rng_, -5, 5);
  const Vec dout = Uniform(n, rng_);
  auto loss = [&] {
    Vec out(n);
    cpu::GeluForward(out.data(), x.data(), n);
    return WeightedSum(out, dout);
  };
  Vec dx = Poisoned<double>(n);
  cpu::GeluBackward(dx.data(), x.data(), dout.data(), n);
  ExpectGradientMatches("inp", &x, dx, loss, rng_);

  const auto x32 = Cast<float>(x), dout32 = Cast<float>(dout);
  const Vec xr = Cast<double>(x32), doutr = Cast<double>(dout32);
  Vec dxr(n);
  cpu::GeluBackward(dxr.data(), xr.data(), doutr.data(), n);
  auto dx32 = Poisoned<float>(n);
  cpu::GeluBackward(dx32.data(), x32.data(), dout32.data(), n);
  ExpectAllClose("dinp f32 vs f64", dx32, dxr, 1e-6, 1e-5);
}

TEST_F(ElementwiseTest, AddAndAccumulate) {
  // Long enough for the parallel path.
  const int64_t n = 100003;
  const Vec a = Uniform(n, rng_), b = Uniform(n, rng_);
  Vec out = Poisoned<double>(n);
  cpu::Add(out.data(), a.data(), b.data(), n);
  ExpectAllClose("Add", out, Plus(a, b), 0, 0);
  Vec aliased = a;
  cpu::Add(aliased.data(), aliased.data(), b.data(), n);
  ExpectAllClose("Add into a", aliased, Plus(a, b), 0, 0);
  Vec dst = a;
  cpu::Accumulate(dst.data(), b.data(), n);
  cpu::Accumulate(dst.data(), b.data(), n);
  ExpectAllClose("Accumulate twice", dst, Plus(Plus(a, b), b), 0, 0);
}

// ---- cross-entropy -----------------------------------------------------------------------

class CrossEntropyTest : public SeededTest {};

TEST_F(CrossEntropyTest, ForwardMatchesNaiveLoopWithIgnoredRowsAndPadding) {
  const int64_t N = 13;
  const int V = 29, Vp = 32;
  Vec logits = Uniform(N * Vp, rng_, -4, 4);
  // Padding columns hold values that would dominate the softmax if they took part.
  for (int64_t i = 0; i < N; ++i)
    for (int j = V; j < Vp; ++j) logits[i * Vp + j] = 50.0;
  auto targets = UniformInts(N, rng_, 0, V - 1);
  targets[3] = -1;
  targets[8] = -100;  // PyTorch's ignore_index
  Vec lse_ref(N), loss_ref(N);
  for (int64_t i = 0; i < N; ++i) {
    double sum = 0;
    for (int j = 0; j < V; ++j) sum += std::exp(logits[i * Vp + j]);
    lse_ref[i] = std::log(sum);
    loss_ref[i] = targets[i] < 0 ? 0.0 : lse_ref[i] - logits[i * Vp + targets[i]];
  }
  Vec losses = Poisoned<double>(N), lse = Poisoned<double>(N);
  cpu::CrossEntropyForward(losses.data(), lse.data(), logits.data(), targets.data(), N, V, Vp);
  ExpectAllClose("losses", losses, loss_ref, 1e-13, 1e-13);
  ExpectAllClose("lse", lse, lse_ref, 1e-13, 1e-13);
  EXPECT_EQ(losses[3], 0.0);
  EXPECT_EQ(losses[8], 0.0);

  const auto logits32 = Cast<float>(logits);
  auto losses32 = Poisoned<float>(N), lse32 = Poisoned<float>(N);
  cpu::CrossEntropyForward(losses32.data(), lse32.data(), logits32.data(), targets.data(), N, V,
                           Vp);
  ExpectAllClose("losses (f32)", losses32, loss_ref, 1e-5, 1e-5);
  ExpectAllClose("lse (f32)", lse32, lse_ref, 1e-5, 1e-5);
}

TEST_F(CrossEntropyTest, BackwardMatchesFiniteDifferencesAndZeroesPadding) {
  const int64_t N = 13;
  const int V = 29, Vp = 32;
  Vec logits = Uniform(N * Vp, rng_, -3, 3);
  auto targets = UniformInts(N, rng_, 0, V - 1);
  targets[0] = -1;
  targets[11] = -7;
  const double dloss = 0.37;  // e.g. 1/N of a mean
  auto loss = [&] {
    Vec losses(N), lse(N);
    cpu::CrossEntropyForward(losses.data(), lse.data(), logits.data(), targets.data(), N, V, Vp);
    return dloss * WeightedSum(losses, Vec(N, 1.0));
  };
  Vec losses(N), lse(N);
  cpu::CrossEntropyForward(losses.data(), lse.data(), logits.data(), targets.data(), N, V, Vp);
  Vec dlogits = Poisoned<double>(N * Vp);
  cpu::CrossEntropyBackward(dlogits.data(), logits.data(), lse.data(), targets.data(), dloss, N,
                            V, Vp);
  ExpectGradientMatches("logits", &logits, dlogits, loss, rng_);
  for (int64_t i = 0; i < N; ++i) {
    for (int j = 0; j < Vp; ++j) {
      if (j >= V || targets[i] < 0) {
        EXPECT_EQ(dlogits[i * Vp + j], 0.0) << "row " << i << " col " << j;
      }
    }
  }

  // In place (dlogits aliasing logits) gives the same bits, in float and in double.
  Vec inplace = logits;
  cpu::CrossEntropyBackward(inplace.data(), inplace.data(), lse.data(), targets.data(), dloss, N,
                            V, Vp);
  ExpectAllClose("in place (f64)", inplace, dlogits, 0, 0);
  const auto logits32 = Cast<float>(logits);
  std::vector<float> losses32(N), lse32(N), d32(N * Vp);
  cpu::CrossEntropyForward(losses32.data(), lse32.data(), logits32.data(), targets.data(), N, V,
                           Vp);
  cpu::CrossEntropyBackward(d32.data(), logits32.data(), lse32.data(), targets.data(),
                            static_cast<float>(dloss), N, V, Vp);
  auto inplace32 = logits32;
  cpu::CrossEntropyBackward(inplace32.data(), inplace32.data(), lse32.data(), targets.data(),
                            static_cast<float>(dloss), N, V, Vp);
  ExpectAllClose("in place (f32)", inplace32, Cast<double>(d32), 0, 0);
  ExpectAllClose("f32 vs f64", d32, dlogits, 1e-6, 1e-5);
}

// ---- degenerate sizes ----------------------------------------------------------------------

// Empty batches are legal (a rank with no rows, a zero-length sequence): no crash, and
// nothing written, accumulating gradients included.
TEST(EmptyInputTest, ZeroRowsTouchNothing) {
  const int C = 5, OC = 3;
  std::vector<float> dw(OC * C, 1.5f), db(OC, 2.5f), lw(C, 1.0f), lb(C, 0.5f);
  const std::vector<float> w(OC * C, 1.0f), bias(OC, 1.0f);
  cpu::MatmulForward<float>(nullptr, nullptr, w.data(), bias.data(), 0, C, OC);
  cpu::MatmulBackward<float>(nullptr, dw.data(), db.data(), nullptr, nullptr, w.data(), 0, C, OC);
  EXPECT_EQ(dw, std::vector<float>(OC * C, 1.5f));
  EXPECT_EQ(db, std::vector<float>(OC, 2.5f));
  cpu::LayerNormForward<float>(nullptr, nullptr, nullptr, nullptr, lw.data(), lb.data(), 0, C);
  cpu::LayerNormBackward<float>(nullptr, lw.data(), lb.data(), nullptr, nullptr, lw.data(),
                                nullptr, nullptr, 0, C);
  EXPECT_EQ(lw, std::vector<float>(C, 1.0f));
  EXPECT_EQ(lb, std::vector<float>(C, 0.5f));
  cpu::EmbeddingForward<float>(nullptr, nullptr, lw.data(), lw.data(), 0, 3, C);
  cpu::EmbeddingBackward<float>(lw.data(), lb.data(), nullptr, nullptr, 0, 3, C);
  EXPECT_EQ(lw, std::vector<float>(C, 1.0f));
  cpu::AttentionForward<float>(nullptr, nullptr, nullptr, 0, 4, 6, 2);
  cpu::AttentionForward<float>(nullptr, nullptr, nullptr, 2, 0, 6, 2);
  cpu::AttentionBackward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, 2, 0, 6, 2);
  cpu::GeluForward<float>(nullptr, nullptr, 0);
  cpu::GeluBackward<float>(nullptr, nullptr, nullptr, 0);
  cpu::Add<float>(nullptr, nullptr, nullptr, 0);
  cpu::Accumulate<float>(nullptr, nullptr, 0);
  cpu::CrossEntropyForward<float>(nullptr, nullptr, nullptr, nullptr, 0, 7, 8);
  cpu::CrossEntropyBackward<float>(nullptr, nullptr, nullptr, nullptr, 1.0f, 0, 7, 8);
}

}  // namespace
}  // namespace colossus::kernels
