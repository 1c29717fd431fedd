// The CUDA attention kernels' own source, run on the CPU through the emulation in
// kernels/cuda/attention_emulation.h, against the CPU reference backend.
//
// This is what checks the kernels on machines without a GPU: the fragment layouts
// (mma / ldmatrix as the PTX ISA defines them), the tile index arithmetic, causal and
// ragged masking, and the shared-memory synchronisation (the emulation flags races,
// reads of unwritten or in-flight shared memory, and misaligned ldmatrix/cp.async).
// cp.async copies land either at issue or at the wait (both legal), so a missing wait
// and a missing barrier before a refill both show. It cannot check timing, the real
// tensor cores' rounding, or anything the compiler does to the PTX: the GPU test
// (cuda_attention_test.cc) does that on a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "colossus/kernels/backend.h"
#include "colossus/kernels/dtype.h"

// Last: the emulation defines threadIdx, __syncthreads & co. as macros.
#define COLOSSUS_ATTN_EMULATE 1
#include "cuda/attention_backward_kernels.cuh"
#include "cuda/attention_forward_kernel.cuh"
#include "cuda/attention_reference_kernels.cuh"

namespace colossus::kernels::cuda::attn {
namespace {

using emu::CopyTiming;
using emu::Dim3;

double Norm(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

// ||got - want|| / max(||want||, floor). The floor is for references that are zero in
// exact arithmetic (dQ and dK when T = 1: a softmax over one key has no gradient), where
// the kernel's bf16 rounding leaves tiny values that no relative bound can accept.
double RelErr(const std::vector<float>& got, const std::vector<float>& want,
              double floor = 0) {
  double num = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
  }
  // NaN anywhere in `got` gives NaN, which fails any bound.
  return std::sqrt(num) / std::max(Norm(want), floor);
}

std::vector<bf16> ToBf16(const std::vector<float>& x) {
  std::vector<bf16> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    __nv_bfloat16_raw raw;
    raw.x = FloatToBf16(x[i]);
    y[i] = raw;
  }
  return y;
}

std::vector<float> ToF32(const std::vector<bf16>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = Bf16ToFloat(static_cast<__nv_bfloat16_raw>(x[i]).x);
  return y;
}

// Random qkv and dout, already rounded to bf16 so that both sides see the same inputs,
// and the CPU reference's out, lse, dqkv on them.
struct Case {
  int B, T, NH, hs;
  std::vector<float> qkv, dout, out, lse, dqkv;

  Case(int B_, int T_, int NH_, int hs_, uint32_t seed) : B(B_), T(T_), NH(NH_), hs(hs_) {
    const int64_t btc = static_cast<int64_t>(B) * T * NH * hs;
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    qkv.resize(3 * btc);
    dout.resize(btc);
    for (float& x : qkv) x = Bf16ToFloat(FloatToBf16(normal(rng)));
    for (float& x : dout) x = Bf16ToFloat(FloatToBf16(normal(rng)));
    out.resize(btc);
    lse.resize(static_cast<size_t>(B) * NH * T);
    dqkv.resize(3 * btc);
    auto cpu = MakeCpuBackend(1);
    const int C = NH * hs;
    cpu->AttentionForward(View(out.data(), btc), lse.data(), View(qkv.data(), 3 * btc), B, T, C,
                          NH);
    cpu->AttentionBackward(View(dqkv.data(), 3 * btc), View(dout.data(), btc),
                           View(qkv.data(), 3 * btc), View(out.data(), btc), lse.data(), B, T, C,
                           NH);
  }
  int C() const { return NH * hs; }
};

std::string Show(const std::vector<std::string>& errors) {
  std::string s;
  for (const auto& e : errors) s += "\n  " + e;
  return s;
}

template <int D>
void EmulateFlashForward(bf16* out, float* lse, const bf16* qkv, int B, int T, int NH,
                         CopyTiming timing, std::vector<std::string>& errors) {
  using Cfg = FwdTile<D>;
  const Dim3 grid{static_cast<unsigned>(B * NH),
                  static_cast<unsigned>((T + Cfg::kBr - 1) / Cfg::kBr), 1};
  const float scale_log2 = SoftmaxScale(D) * kLog2e;
  emu::Launch(grid, Dim3{Cfg::kThreads, 1, 1}, Cfg::kSmemBytes, timing, errors,
              [&] { FlashForwardKernel<D>(out, lse, qkv, T, NH, scale_log2); });
}

// The same sequence as LaunchFlashBackward (attention_backward.cu).
template <int D>
void EmulateFlashBackward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                          const float* lse, int B, int T, int NH, CopyTiming timing,
                          std::vector<std::string>& errors) {
  using Cfg = BwdTile<D>;
  const int C = NH * D;
  const int64_t rows = static_cast<int64_t>(B) * T;
  const float scale = SoftmaxScale(D);
  std::vector<float> dq_accum(rows * C, 0.f);
  std::vector<float> delta(static_cast<size_t>(B) * NH * T,
                           std::numeric_limits<float>::quiet_NaN());
  const int64_t delta_rows = rows * NH;
  emu::Launch(Dim3{static_cast<unsigned>((delta_rows + 7) / 8), 1, 1}, Dim3{256, 1, 1}, 0, timing,
              errors, [&] { DeltaKernel(delta.data(), dout, out, delta_rows, T, NH, D); });
  const Dim3 grid{static_cast<unsigned>(B * NH),
                  static_cast<unsigned>((T + Cfg::kBc - 1) / Cfg::kBc), 1};
  emu::Launch(grid, Dim3{Cfg::kThreads, 1, 1}, Cfg::kSmemBytes, timing, errors, [&] {
    FlashBackwardKernel<D>(dqkv, dq_accum.data(), dout, qkv, lse, delta.data(), T, NH,
                           scale * kLog2e, scale);
  });
  const int64_t pairs = rows * C / 2;
  emu::Launch(Dim3{static_cast<unsigned>((pairs + 255) / 256), 1, 1}, Dim3{256, 1, 1}, 0, timing,
              errors, [&] { DqConvertKernel(dqkv, dq_accum.data(), rows, C, scale); });
}

struct FlashParam {
  int B, T, NH, hs;
  CopyTiming timing;
};

class EmulatedFlash : public ::testing::TestWithParam<FlashParam> {};

TEST_P(EmulatedFlash, MatchesCpuReference) {
  const FlashParam p = GetParam();
  const Case c(p.B, p.T, p.NH, p.hs, 1234 + p.T + p.hs);
  const auto qkv = ToBf16(c.qkv);
  const auto dout = ToBf16(c.dout);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<bf16> out = ToBf16(std::vector<float>(c.out.size(), nan));
  std::vector<float> lse(c.lse.size(), nan);
  std::vector<bf16> dqkv = ToBf16(std::vector<float>(c.dqkv.size(), nan));
  std::vector<std::string> errors;

  if (p.hs == 64) {
    EmulateFlashForward<64>(out.data(), lse.data(), qkv.data(), p.B, p.T, p.NH, p.timing, errors);
  } else {
    EmulateFlashForward<128>(out.data(), lse.data(), qkv.data(), p.B, p.T, p.NH, p.timing, errors);
  }
  ASSERT_TRUE(errors.empty()) << "forward:" << Show(errors);
  EXPECT_LT(RelErr(ToF32(out), c.out), 2e-2) << "out";
  EXPECT_LT(RelErr(lse, c.lse), 2e-2) << "lse";

  // Backward from the kernel's own (bf16) out and lse, as training runs it.
  if (p.hs == 64) {
    EmulateFlashBackward<64>(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), p.B, p.T,
                             p.NH, p.timing, errors);
  } else {
    EmulateFlashBackward<128>(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), p.B,
                              p.T, p.NH, p.timing, errors);
  }
  ASSERT_TRUE(errors.empty()) << "backward:" << Show(errors);
  const std::vector<float> got = ToF32(dqkv);
  EXPECT_LT(RelErr(got, c.dqkv), 2e-2) << "dqkv";
  // Each third separately too: a small dQ error could hide under a large dV.
  const int C = c.C();
  for (int part = 0; part < 3; ++part) {
    std::vector<float> g, w;
    for (int64_t row = 0; row < static_cast<int64_t>(p.B) * p.T; ++row) {
      for (int i = 0; i < C; ++i) {
        g.push_back(got[(row * 3 + part) * C + i]);
        w.push_back(c.dqkv[(row * 3 + part) * C + i]);
      }
    }
    // Judged against its own norm, floored at 5% of the whole dqkv's.
    EXPECT_LT(RelErr(g, w, 0.05 * Norm(c.dqkv)), 2e-2) << "dqkv part " << "qkv"[part];
  }
}

// T: a single row; ragged inside one tile; exactly one tile; several tiles with a
// ragged end (and, for hs = 128, backward query tiles of 32 inside key tiles of 64).
INSTANTIATE_TEST_SUITE_P(Shapes, EmulatedFlash,
                         ::testing::Values(FlashParam{1, 1, 1, 64, CopyTiming::kAtIssue},
                                           FlashParam{1, 17, 2, 64, CopyTiming::kAtWait},
                                           FlashParam{1, 64, 1, 64, CopyTiming::kAtIssue},
                                           FlashParam{2, 130, 1, 64, CopyTiming::kAtIssue},
                                           FlashParam{1, 130, 2, 64, CopyTiming::kAtWait},
                                           FlashParam{1, 17, 1, 128, CopyTiming::kAtIssue},
                                           FlashParam{1, 100, 2, 128, CopyTiming::kAtWait},
                                           FlashParam{1, 130, 1, 128, CopyTiming::kAtIssue}),
                         [](const ::testing::TestParamInfo<FlashParam>& info) {
                           const FlashParam& p = info.param;
                           return "B" + std::to_string(p.B) + "_T" + std::to_string(p.T) + "_NH" +
                                  std::to_string(p.NH) + "_hs" + std::to_string(p.hs) +
                                  (p.timing == CopyTiming::kAtIssue ? "_copies_at_issue"
                                                                    : "_copies_at_wait");
                         });

// The f32 reference kernels, at the f32 tolerance, including a head size that is
// neither 64 nor 128 and not a multiple of 32.
TEST(EmulatedReference, F32MatchesCpuReference) {
  for (const auto& [B, T, NH, hs] : {std::tuple{1, 33, 2, 64}, std::tuple{2, 20, 1, 40}}) {
    const Case c(B, T, NH, hs, 99 + T);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> out(c.out.size(), nan), lse(c.lse.size(), nan), dqkv(c.dqkv.size(), nan);
    std::vector<float> delta(c.lse.size(), nan);
    std::vector<std::string> errors;
    const int64_t rows = static_cast<int64_t>(B) * NH * T;
    const Dim3 grid{static_cast<unsigned>((rows + kRefWarpsPerBlock - 1) / kRefWarpsPerBlock), 1,
                    1};
    const Dim3 block{32 * kRefWarpsPerBlock, 1, 1};
    const float scale = SoftmaxScale(hs);
    emu::Launch(grid, block, 0, CopyTiming::kAtIssue, errors, [&] {
      ReferenceForwardKernel<float>(out.data(), lse.data(), c.qkv.data(), B, T, NH, hs, scale);
    });
    emu::Launch(grid, block, 0, CopyTiming::kAtIssue, errors, [&] {
      ReferenceBackwardQueryKernel<float>(dqkv.data(), delta.data(), c.dout.data(), c.qkv.data(),
                                          c.out.data(), c.lse.data(), B, T, NH, hs, scale);
    });
    emu::Launch(grid, block, 0, CopyTiming::kAtIssue, errors, [&] {
      ReferenceBackwardKeyKernel<float>(dqkv.data(), delta.data(), c.dout.data(), c.qkv.data(),
                                        c.lse.data(), B, T, NH, hs, scale);
    });
    ASSERT_TRUE(errors.empty()) << Show(errors);
    EXPECT_LT(RelErr(out, c.out), 1e-5) << "out, hs " << hs;
    EXPECT_LT(RelErr(lse, c.lse), 1e-5) << "lse, hs " << hs;
    EXPECT_LT(RelErr(dqkv, c.dqkv), 1e-5) << "dqkv, hs " << hs;
  }
}

// The race detector itself: a kernel that reads another thread's shared-memory write
// without a barrier must be reported (so a clean run above means something).
void RacyKernel(float* sink) {
  COLOSSUS_ATTN_DYNAMIC_SMEM(smem);
  float* s = reinterpret_cast<float*>(smem);
  StoreShared32(s + threadIdx.x, 0u);
  sink[threadIdx.x] = LoadSharedF32(s + (threadIdx.x + 1) % 64);  // no __syncthreads
}

TEST(EmulatedReference, RaceDetectorReportsAMissingBarrier) {
  std::vector<float> sink(64);
  std::vector<std::string> errors;
  emu::Launch(Dim3{1, 1, 1}, Dim3{64, 1, 1}, 256, CopyTiming::kAtIssue, errors,
              [&] { RacyKernel(sink.data()); });
  EXPECT_FALSE(errors.empty());
}

}  // namespace
}  // namespace colossus::kernels::cuda::attn
