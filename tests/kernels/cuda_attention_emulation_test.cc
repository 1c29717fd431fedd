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

#include "cuda/attention.h"

// Last: the emulation defines threadIdx, __syncthreads & co. as macros.
#define COLOSSUS_ATTN_EMULATE 1
#include "cuda/attention_internal.cuh"

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

// The entry points of cuda/attention.h, compiled for the host with their launchers and
// kernels (cuda_emulated_attention.cc), with copies landing as `timing` says and the
// emulation's findings collected in `errors`.
void EmulatedForward(View out, float* lse, View qkv, int B, int T, int NH, int hs,
                     CopyTiming timing, std::vector<std::string>& errors) {
  emu::LaunchScope scope(timing, &errors);
  cuda::AttentionForward(out, lse, qkv, B, T, NH * hs, NH, /*stream=*/nullptr);
}
void EmulatedBackward(View dqkv, View dout, View qkv, View out, const float* lse, int B, int T,
                      int NH, int hs, CopyTiming timing, std::vector<std::string>& errors) {
  const int C = NH * hs;
  // Scratch as the backend's: contents on entry do not matter, so NaN.
  std::vector<float> scratch(cuda::AttentionBackwardScratchBytes(B, T, C, NH) / sizeof(float),
                             std::numeric_limits<float>::quiet_NaN());
  emu::LaunchScope scope(timing, &errors);
  cuda::AttentionBackward(dqkv, dout, qkv, out, lse, scratch.data(), B, T, C, NH,
                          /*stream=*/nullptr);
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

  // Views as the backend passes them; the flash kernels must be the ones that run.
  const int64_t btc = static_cast<int64_t>(c.out.size());
  auto bf16_view = [](std::vector<bf16>& v) { return View(v.data(), DType::kBF16, static_cast<int64_t>(v.size())); };
  std::vector<bf16> qkv_in = qkv, dout_in = dout;  // the API takes mutable views
  const View qkv_v = bf16_view(qkv_in), dout_v = bf16_view(dout_in), out_v = bf16_view(out),
             dqkv_v = bf16_view(dqkv);
  ASSERT_EQ(out_v.numel, btc);
  ASSERT_TRUE(UsesFlash(DType::kBF16, p.hs, {out_v.data, qkv_v.data, dout_v.data, dqkv_v.data}));

  EmulatedForward(out_v, lse.data(), qkv_v, p.B, p.T, p.NH, p.hs, p.timing, errors);
  ASSERT_TRUE(errors.empty()) << "forward:" << Show(errors);
  EXPECT_LT(RelErr(ToF32(out), c.out), 2e-2) << "out";
  EXPECT_LT(RelErr(lse, c.lse), 2e-2) << "lse";

  // Backward from the kernel's own (bf16) out and lse, as training runs it.
  EmulatedBackward(dqkv_v, dout_v, qkv_v, out_v, lse.data(), p.B, p.T, p.NH, p.hs, p.timing,
                   errors);
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

// The f32 reference kernels through the same entry points, at the f32 tolerance,
// including a head size that is neither 64 nor 128 and not a multiple of 32.
TEST(EmulatedReference, F32MatchesCpuReference) {
  for (const auto& [B, T, NH, hs] : {std::tuple{1, 33, 2, 64}, std::tuple{2, 20, 1, 40}}) {
    const Case c(B, T, NH, hs, 99 + T);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> out(c.out.size(), nan), lse(c.lse.size(), nan), dqkv(c.dqkv.size(), nan);
    std::vector<float> qkv = c.qkv, dout = c.dout;  // the API takes mutable views
    std::vector<std::string> errors;
    // f32 views never take the flash kernels: this is the reference path.
    ASSERT_FALSE(UsesFlash(DType::kF32, hs, {out.data(), qkv.data()}));
    EmulatedForward(View(out.data(), static_cast<int64_t>(out.size())), lse.data(),
                    View(qkv.data(), static_cast<int64_t>(qkv.size())), B, T, NH, hs,
                    CopyTiming::kAtIssue, errors);
    // Backward from the CPU's out and lse, so that only the backward is judged.
    std::vector<float> ref_out = c.out, ref_lse = c.lse;
    EmulatedBackward(View(dqkv.data(), static_cast<int64_t>(dqkv.size())),
                     View(dout.data(), static_cast<int64_t>(dout.size())),
                     View(qkv.data(), static_cast<int64_t>(qkv.size())),
                     View(ref_out.data(), static_cast<int64_t>(ref_out.size())), ref_lse.data(), B,
                     T, NH, hs, CopyTiming::kAtIssue, errors);
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

// A block whose threads wait at barriers the others never reach (thread 0 at a second
// __syncthreads, the rest of its warp at a shuffle) hangs on a GPU; the emulation's
// scheduler sees that no thread can move and aborts with a message instead of hanging.
void DeadlockKernel() {
  __syncthreads();
  if (threadIdx.x == 0) __syncthreads();
  (void)__shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

TEST(EmulatedReferenceDeathTest, ABlockThatCannotMoveAbortsInsteadOfHanging) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::vector<std::string> errors;
        emu::Launch(Dim3{1, 1, 1}, Dim3{32, 1, 1}, 0, CopyTiming::kAtIssue, errors,
                    [] { DeadlockKernel(); });
      },
      "emulated block deadlocked: 32 of 32 threads wait");
}

// The launch checks: more than 48 KB of dynamic shared memory needs the kernel's opt-in
// (the flash kernels' launchers make it; forgetting it fails every launch on a GPU), and
// no opt-in goes past sm_90's 227 KB.
// Opt-ins are per kernel and last for the process: each use below has its own kernel.
template <int kUse>
void SmemKernel(float* sink) {
  COLOSSUS_ATTN_DYNAMIC_SMEM(smem);
  float* s = reinterpret_cast<float*>(smem);
  StoreShared32(s + threadIdx.x, 0u);
  if (threadIdx.x == 0) sink[0] = LoadSharedF32(s);
}

TEST(EmulatedReference, LaunchesNeedTheSharedMemoryOptIn) {
  std::vector<float> sink(1, 1.0f);
  const size_t big = 64 * 1024;
  std::vector<std::string> errors;
  {
    emu::LaunchScope scope(CopyTiming::kAtIssue, &errors);
    COLOSSUS_ATTN_LAUNCH(SmemKernel<0>, 1, 32, big, nullptr, sink.data());
  }
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  EXPECT_NE(errors[0].find("allowed 49152"), std::string::npos) << errors[0];
  EXPECT_EQ(sink[0], 1.0f) << "a refused launch must not run";

  errors.clear();
  {
    emu::LaunchScope scope(CopyTiming::kAtIssue, &errors);
    COLOSSUS_ATTN_ALLOW_SMEM(SmemKernel<1>, 228 * 1024);  // over the hardware's limit
    COLOSSUS_ATTN_ALLOW_SMEM(SmemKernel<1>, big);
    COLOSSUS_ATTN_LAUNCH(SmemKernel<1>, 1, 32, big, nullptr, sink.data());
  }
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  EXPECT_NE(errors[0].find("at most 232448"), std::string::npos) << errors[0];
  EXPECT_EQ(sink[0], 0.0f) << "the opted-in launch ran";
}

}  // namespace
}  // namespace colossus::kernels::cuda::attn
