// MakeCudaBackend and the CUDA backend's non-transformer ops: availability (the one
// test here that runs on every machine), memory and copies, Fill, Cast, Add and
// Accumulate across dtypes, AdamW, SumSquares, and misuse that must abort with a
// message naming the op and the argument. Op numerics are in cuda_ops_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "colossus/kernels/backend.h"
#include "colossus/kernels/cuda_backend.h"
#include "colossus/kernels/cuda_device.h"
#include "kernels/cuda_test_util.h"

namespace colossus::kernels::testing {
namespace {

using ::testing::HasSubstr;

class CudaBackendTest : public CudaTest {};

#if !defined(COLOSSUS_TEST_EMULATED_CUDA)  // the real device: availability, memory, misuse

// ---- availability: runs everywhere ------------------------------------------------------------

TEST(CudaAvailabilityTest, MakeCudaBackendAgreesWithTheProbe) {
  const CudaProbe probe = ProbeCudaDevices();
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeCudaBackend(0);
  if (probe.devices.empty()) {
    // No GPU or no driver (this is every build machine): an error, never a crash.
    ASSERT_FALSE(backend.ok());
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable) << backend.status();
    EXPECT_THAT(std::string(backend.status().message()), HasSubstr("cudaGetDeviceCount"));
    // The probe's reason is "cudaGetDeviceCount: <CUDA's text>"; the status carries the
    // same text.
    const std::string text = probe.reason.substr(probe.reason.find(": ") + 2);
    EXPECT_THAT(std::string(backend.status().message()), HasSubstr(text));
    EXPECT_FALSE(MakeCudaBackend(1).ok());
    return;
  }
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->kind(), DeviceKind::kCUDA);
  EXPECT_EQ((*backend)->compute_dtype(), DType::kBF16);
  EXPECT_THAT((*backend)->Describe(), HasSubstr(probe.devices[0].name));
  EXPECT_THAT((*backend)->Describe(), HasSubstr("cuda:0"));
  EXPECT_NE(CudaStreamOf(**backend), nullptr);
  const int past_end = static_cast<int>(probe.devices.size());
  EXPECT_EQ(MakeCudaBackend(past_end).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeCudaBackend(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- memory and copies --------------------------------------------------------------------------

TEST_F(CudaBackendTest, AllocatesAlignedMemoryAndCopies) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{1000}, size_t{1} << 24}) {
    absl::StatusOr<void*> p = gpu_->Allocate(bytes);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_NE(*p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % 256, 0u) << bytes << " bytes";
    gpu_->Free(*p);
  }
  gpu_->Free(nullptr);
  // Far more than any GPU has: an error naming the size, not an abort.
  absl::StatusOr<void*> huge = gpu_->Allocate(size_t{1} << 50);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(huge.status().message()), HasSubstr(std::to_string(size_t{1} << 50)));

  const std::vector<float> src = RandomFloats(1001, rng_, -1, 1);
  DeviceArray a(gpu_.get(), DType::kF32, 1001), b(gpu_.get(), DType::kF32, 1001);
  a.Upload(src);
  gpu_->Copy(b.data(), a.data(), 1001 * 4);
  EXPECT_EQ(b.Download(), src);
  // Overlapping ranges copy like memmove.
  gpu_->Copy(b.f32() + 3, b.f32(), 900 * 4);
  std::vector<float> expect = src;
  std::memmove(expect.data() + 3, src.data(), 900 * 4);
  EXPECT_EQ(b.Download(), expect);
  gpu_->Copy(b.f32(), b.f32() + 5, 900 * 4);
  std::vector<float> expect2 = expect;
  std::memmove(expect2.data(), expect.data() + 5, 900 * 4);
  EXPECT_EQ(b.Download(), expect2);
  gpu_->Synchronize();
}

#endif  // !COLOSSUS_TEST_EMULATED_CUDA

TEST_F(CudaBackendTest, FillsEveryDtype) {
  for (const int64_t n : {int64_t{1}, int64_t{13}, int64_t{40001}}) {
    DeviceArray f32(gpu_.get(), DType::kF32, n), bf16(gpu_.get(), DType::kBF16, n),
        f16(gpu_.get(), DType::kF16, n), i32(gpu_.get(), DType::kI32, n);
    gpu_->Fill(f32.view(), 1.25f);
    gpu_->Fill(bf16.view(), 0.1f);
    gpu_->Fill(f16.view(), 1.5f);
    gpu_->Fill(i32.view(), -3.0f);
    EXPECT_EQ(f32.Download(), std::vector<float>(n, 1.25f));
    EXPECT_EQ(bf16.Download(), std::vector<float>(n, Bf16ToFloat(FloatToBf16(0.1f))));
    std::vector<uint16_t> half(n);
    gpu_->CopyToHost(half.data(), f16.data(), n * 2);
    EXPECT_EQ(half, std::vector<uint16_t>(n, uint16_t{0x3e00}));  // 1.5 in IEEE half
    std::vector<int32_t> ints(n);
    gpu_->CopyToHost(ints.data(), i32.data(), n * 4);
    EXPECT_EQ(ints, std::vector<int32_t>(n, -3));
    gpu_->Fill(f32.view(), std::numeric_limits<float>::quiet_NaN());
    gpu_->Fill(bf16.view(), std::numeric_limits<float>::quiet_NaN());
    for (float v : f32.Download()) ASSERT_TRUE(std::isnan(v));
    for (float v : bf16.Download()) ASSERT_TRUE(std::isnan(v));
  }
}

TEST_F(CudaBackendTest, CastsExactlyAsTheCpu) {
  for (const int64_t n : {int64_t{1}, int64_t{13}, int64_t{50001}}) {
    SCOPED_TRACE(absl::StrCat("n=", n));
    std::vector<float> x = RandomFloats(n, rng_, -100, 100);
    x[0] = 1.0f / 3.0f;
    if (n > 4) x[1] = -0.0f, x[2] = 65504.0f, x[3] = 1e-6f, x[4] = 3.0e38f;
    auto g_x = Gpu(x, DType::kF32);
    for (const DType to : {DType::kBF16, DType::kF16}) {
      // CPU: the reference conversion (round to nearest even).
      std::vector<uint16_t> want(n), got(n);
      cpu_->Cast(View(want.data(), to, n), View(x.data(), n), n);
      DeviceArray g_to(gpu_.get(), to, n);
      g_to.Poison();
      gpu_->Cast(g_to.view(), g_x->view(), n);
      gpu_->CopyToHost(got.data(), g_to.data(), n * 2);
      EXPECT_EQ(got, want) << "f32 -> " << DTypeName(to);
      // And back to f32, which is exact.
      std::vector<float> back_want(n);
      cpu_->Cast(View(back_want.data(), n), View(want.data(), to, n), n);
      DeviceArray g_back(gpu_.get(), DType::kF32, n);
      g_back.Poison();
      gpu_->Cast(g_back.view(), g_to.view(), n);
      EXPECT_EQ(g_back.Download(), back_want) << DTypeName(to) << " -> f32";
    }
    // f16 -> bf16 (one rounding) and a same-dtype cast (a copy).
    std::vector<uint16_t> f16(n), bf16_want(n), bf16_got(n);
    cpu_->Cast(View(f16.data(), DType::kF16, n), View(x.data(), n), n);
    cpu_->Cast(View(bf16_want.data(), DType::kBF16, n), View(f16.data(), DType::kF16, n), n);
    DeviceArray g_f16(gpu_.get(), DType::kF16, n), g_bf16(gpu_.get(), DType::kBF16, n);
    gpu_->CopyFromHost(g_f16.data(), f16.data(), n * 2);
    gpu_->Cast(g_bf16.view(), g_f16.view(), n);
    gpu_->CopyToHost(bf16_got.data(), g_bf16.data(), n * 2);
    EXPECT_EQ(bf16_got, bf16_want) << "f16 -> bf16";
    DeviceArray g_copy(gpu_.get(), DType::kF32, n);
    gpu_->Cast(g_copy.view(), g_x->view(), n);
    EXPECT_EQ(g_copy.Download(), x);
  }
}

TEST_F(CudaBackendTest, AddAndAccumulateAcrossDtypes) {
  const DType kTypes[] = {DType::kF32, DType::kBF16};
  for (const int64_t n : {int64_t{1}, int64_t{13}, int64_t{4099}}) {
    for (DType to : kTypes) {
      for (DType ta : kTypes) {
        for (DType tb : kTypes) {
          SCOPED_TRACE(absl::StrCat("n=", n, " out=", DTypeName(to), " a=", DTypeName(ta),
                                    " b=", DTypeName(tb)));
          const std::vector<float> a = Quantize(RandomFloats(n, rng_, -2, 2), ta);
          const std::vector<float> b = Quantize(RandomFloats(n, rng_, -2, 2), tb);
          std::vector<float> want(n);
          for (int64_t i = 0; i < n; ++i) want[i] = a[i] + b[i];
          want = Quantize(want, to);  // one rounding of the f32 sum
          auto g_a = Gpu(a, ta), g_b = Gpu(b, tb);
          auto g_out = GpuPoisoned(n, to);
          gpu_->Add(g_out->view(), g_a->view(), g_b->view(), n);
          EXPECT_EQ(g_out->Download(), want) << "Add";
          if (ta == to) {  // Accumulate: dst = a (dtype to) += b
            gpu_->Accumulate(g_a->view(), g_b->view(), n);
            EXPECT_EQ(g_a->Download(), want) << "Accumulate";
          }
        }
      }
    }
  }
}

// ---- optimizer ------------------------------------------------------------------------------------

TEST_F(CudaBackendTest, AdamWMatchesTheCpu) {
  AdamWParams p;
  p.lr = 1e-3f;
  p.weight_decay = 0.1f;
  p.grad_scale = 0.5f;
  p.step = 3;
  for (const int64_t n : {int64_t{1}, int64_t{1003}, int64_t{4101}}) {
    for (const DType grad_dtype : {DType::kF32, DType::kBF16}) {
      for (const int copy_kind : {0, 1, 2}) {  // absent, f32, bf16
        SCOPED_TRACE(absl::StrCat("n=", n, " grad=", DTypeName(grad_dtype), " copy=", copy_kind));
        std::vector<float> w = RandomFloats(n, rng_, -1, 1);
        const std::vector<float> g = Quantize(RandomFloats(n, rng_, -1, 1), grad_dtype);
        std::vector<float> m = RandomFloats(n, rng_, -0.1, 0.1);
        std::vector<float> v = RandomFloats(n, rng_, 0, 0.01);
        auto g_w = Gpu(w, DType::kF32), g_g = Gpu(g, grad_dtype), g_m = Gpu(m, DType::kF32),
             g_v = Gpu(v, DType::kF32);
        const DType copy_dtype = copy_kind == 2 ? DType::kBF16 : DType::kF32;
        std::unique_ptr<DeviceArray> g_copy;
        if (copy_kind != 0) g_copy = GpuPoisoned(n, copy_dtype);
        gpu_->AdamW(g_w->view(), g_g->view(), g_m->f32(), g_v->f32(),
                    g_copy ? g_copy->view() : View(), n, p);
        std::vector<float> gc = g;
        cpu_->AdamW(View(w.data(), n), View(gc.data(), n), m.data(), v.data(), View(), n, p);
        ExpectRelativeClose("param", g_w->Download(), w, 1e-6);
        ExpectRelativeClose("m", g_m->Download(), m, 1e-6);
        ExpectRelativeClose("v", g_v->Download(), v, 1e-6);
        if (g_copy) {
          ExpectRelativeClose("param_copy", g_copy->Download(), Quantize(w, copy_dtype),
                              copy_dtype == DType::kF32 ? 1e-6 : 4e-3);
        }
      }
    }
  }
}

// One AdamW call over a flat buffer of several tensors, weight decay by a mask, equals
// one call per tensor bit for bit (the fused optimizer step rests on it), also over a
// sub-range starting mid-vector (a ZeRO shard's), and matches the CPU's masked call.
TEST_F(CudaBackendTest, AdamWWithADecayMaskEqualsOneCallPerTensor) {
  AdamWParams p;
  p.lr = 1e-3f;
  p.weight_decay = 0.1f;
  p.grad_scale = 0.75f;
  p.step = 2;
  // Tensors at granule-aligned offsets with zero gaps between them, as MemoryPlan lays
  // them out: (offset, numel, decays).
  const int64_t G = kAdamWDecayGranule;
  struct Piece {
    int64_t offset, numel;
    bool decays;
  };
  const std::vector<Piece> pieces = {{0, 37, true}, {3 * G, 16, false}, {4 * G, 50, true},
                                     {8 * G, 5, false}, {9 * G, 64, false}, {13 * G, 33, true}};
  const int64_t n = 16 * G;
  std::vector<uint8_t> mask(static_cast<size_t>(n / G), 0);
  std::vector<float> w(n, 0.0f), g(n, 0.0f), m(n, 0.0f), v(n, 0.0f);
  for (const Piece& pc : pieces) {
    for (int64_t i = pc.offset; i < pc.offset + pc.numel; ++i) {
      w[i] = RandomFloats(1, rng_, -1, 1)[0];
      g[i] = RandomFloats(1, rng_, -1, 1)[0];
      m[i] = RandomFloats(1, rng_, -0.1, 0.1)[0];
      v[i] = RandomFloats(1, rng_, 0, 0.01)[0];
    }
    if (pc.decays) {
      for (int64_t k = pc.offset / G; k < (pc.offset + pc.numel + G - 1) / G; ++k) mask[k] = 1;
    }
  }
  // The mask in backend memory: bytes through an i32 array.
  DeviceArray g_mask(gpu_.get(), DType::kI32, static_cast<int64_t>(mask.size() + 3) / 4);
  gpu_->CopyFromHost(g_mask.data(), mask.data(), mask.size());

  for (const int64_t origin : {int64_t{0}, int64_t{37}}) {
    SCOPED_TRACE(absl::StrCat("range starts at element ", origin));
    const int64_t len = n - origin;
    auto tail = [&](const std::vector<float>& x) {
      return std::vector<float>(x.begin() + origin, x.end());
    };
    // Fused: one call with the mask.
    auto f_w = Gpu(tail(w), DType::kF32), f_g = Gpu(tail(g), DType::kF32),
         f_m = Gpu(tail(m), DType::kF32), f_v = Gpu(tail(v), DType::kF32);
    auto f_copy = GpuPoisoned(len, DType::kBF16);
    AdamWParams fp = p;
    fp.decay_mask = static_cast<const uint8_t*>(g_mask.data());
    fp.mask_origin = origin;
    gpu_->AdamW(f_w->view(), f_g->view(), f_m->f32(), f_v->f32(), f_copy->view(), len, fp);
    // Per tensor: one call each, weight decay 0 or p.weight_decay, gaps untouched.
    auto t_w = Gpu(tail(w), DType::kF32), t_g = Gpu(tail(g), DType::kF32),
         t_m = Gpu(tail(m), DType::kF32), t_v = Gpu(tail(v), DType::kF32);
    auto t_copy = Gpu(std::vector<float>(static_cast<size_t>(len), 0.0f), DType::kBF16);
    for (const Piece& pc : pieces) {
      const int64_t lo = std::max(pc.offset, origin) - origin;
      const int64_t hi = pc.offset + pc.numel - origin;
      if (hi <= lo) continue;
      AdamWParams tp = p;
      tp.weight_decay = pc.decays ? p.weight_decay : 0.0f;
      gpu_->AdamW(View(t_w->f32() + lo, hi - lo), View(t_g->f32() + lo, hi - lo), t_m->f32() + lo,
                  t_v->f32() + lo,
                  View(static_cast<uint16_t*>(t_copy->data()) + lo, DType::kBF16, hi - lo),
                  hi - lo, tp);
    }
    EXPECT_EQ(f_w->Download(), t_w->Download()) << "params";
    EXPECT_EQ(f_m->Download(), t_m->Download()) << "m";
    EXPECT_EQ(f_v->Download(), t_v->Download()) << "v";
    EXPECT_EQ(f_copy->Download(), t_copy->Download()) << "bf16 copies (gaps: zero in both)";

    // The CPU's masked call agrees to rounding (its own arithmetic, the same formula).
    std::vector<float> cw = tail(w), cg = tail(g), cm = tail(m), cv = tail(v);
    AdamWParams cp = p;
    cp.decay_mask = mask.data();
    cp.mask_origin = origin;
    cpu_->AdamW(View(cw.data(), len), View(cg.data(), len), cm.data(), cv.data(), View(), len, cp);
    ExpectRelativeClose("param vs cpu", f_w->Download(), cw, 1e-6);
    ExpectRelativeClose("m vs cpu", f_m->Download(), cm, 1e-6);
  }
}

TEST_F(CudaBackendTest, SumSquaresAccumulatesInDouble) {
  // Past one block's worth, and (on the device) past the 1024-block grid; the emulation
  // runs every thread as a host thread, so it stops sooner.
  const int64_t large = kEmulatedCuda ? 70001 : (int64_t{1} << 20) + 3;
  for (const int64_t n : {int64_t{1}, int64_t{1003}, large}) {
    for (const DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      SCOPED_TRACE(absl::StrCat("n=", n, " ", DTypeName(dtype)));
      std::vector<float> x = RandomFloats(n, rng_, -3, 3);
      // The element bits, as the CPU would convert them.
      std::vector<uint8_t> bits(n * DTypeSize(dtype));
      cpu_->Cast(View(bits.data(), dtype, n), View(x.data(), n), n);
      float want = 2.5f;
      cpu_->SumSquares(&want, View(bits.data(), dtype, n), n);
      DeviceArray g_x(gpu_.get(), dtype, n);
      gpu_->CopyFromHost(g_x.data(), bits.data(), bits.size());
      auto g_out = Gpu({2.5f}, DType::kF32);
      gpu_->SumSquares(g_out->f32(), g_x.view(), n);
      const float got = g_out->Download()[0];
      EXPECT_NEAR(got, want, 2e-7 * std::fabs(want));
    }
  }
  // n = 0 adds nothing.
  auto g_out = Gpu({2.5f}, DType::kF32);
  DeviceArray g_x(gpu_.get(), DType::kF32, 1);
  gpu_->SumSquares(g_out->f32(), g_x.view(), 0);
  EXPECT_EQ(g_out->Download()[0], 2.5f);
}

// ---- misuse aborts, naming the op and the argument ----------------------------------------------
// The View checks are CudaOpsBackend's, the same code in the emulated build.

class CudaBackendDeathTest : public CudaTest {
 protected:
  CudaBackendDeathTest() { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(CudaBackendDeathTest, RejectsWrongDtypes) {
  DeviceArray x(gpu_.get(), DType::kBF16, 64), w(gpu_.get(), DType::kBF16, 64),
      wf(gpu_.get(), DType::kF32, 64), out(gpu_.get(), DType::kBF16, 64),
      dw16(gpu_.get(), DType::kBF16, 64), stats(gpu_.get(), DType::kF32, 8);
  EXPECT_DEATH(gpu_->MatmulBackward(out.view(), dw16.view(), View(), x.view(), x.view(), w.view(),
                                    8, 8, 8),
               "MatmulBackward: dweight has dtype bf16, but parameter gradients are f32");
  EXPECT_DEATH(gpu_->LayerNormForward(out.view(), stats.f32(), stats.f32(), x.view(), wf.view(),
                                      w.view(), 8, 8),
               "LayerNormForward: weight has dtype f32, but the op runs in bf16");
  std::vector<double> host(4);
  EXPECT_DEATH(gpu_->Cast(out.view(), View(host.data(), 4), 4), "Cast: in has dtype f64");
  EXPECT_DEATH(gpu_->GeluForward(out.view(), x.view(), 65), "GeluForward: out has 64 elements");
}

}  // namespace
}  // namespace colossus::kernels::testing
