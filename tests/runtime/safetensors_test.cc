#include "colossus/safetensors.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "colossus/config.h"
#include "colossus/model.h"
#include "colossus/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "colossus_st_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file made by hand: the 8-byte length, `header` verbatim, then `data`.
std::string RawFile(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

TEST(SafetensorsTest, RoundTripsDtypesShapesAndMetadata) {
  TempDir dir;
  std::vector<float> f32(2 * 3 * 5);
  std::iota(f32.begin(), f32.end(), -7.25f);
  std::vector<uint16_t> bf16 = {0x3f80, 0xbf80, 0x7fc0, 0x0001};
  std::vector<int32_t> i32 = {INT32_MIN, -1, 0, 1, INT32_MAX};
  std::vector<double> f64 = {3.141592653589793};
  std::vector<int64_t> i64 = {INT64_MIN, 42, INT64_MAX};
  std::vector<uint8_t> u8 = {0, 1, 255};
  std::vector<uint16_t> u16 = {65535, 7};
  std::vector<SafetensorsTensor> tensors = {
      {"a.f32", SafetensorsDType::kF32, {2, 3, 5}, f32.data()},
      {"b.bf16", SafetensorsDType::kBF16, {4}, bf16.data()},
      {"c.i32", SafetensorsDType::kI32, {5, 1}, i32.data()},
      {"d.scalar_f64", SafetensorsDType::kF64, {}, f64.data()},
      {"e.empty", SafetensorsDType::kF32, {0, 4}, nullptr},
      {"f.i64", SafetensorsDType::kI64, {3}, i64.data()},
      {"g.u8", SafetensorsDType::kU8, {1, 3}, u8.data()},
      {"h.u16", SafetensorsDType::kU16, {2}, u16.data()},
  };
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode, \"q\""}};
  const std::string path = dir.File("x.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());

  // The data starts 8-byte aligned and no temporary file is left behind.
  const std::string raw = ReadBytes(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);

  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata(), metadata);
  ASSERT_EQ(file->entries().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsTensor& t = tensors[i];
    // Entries come in buffer order, which is the order written.
    EXPECT_EQ(file->entries()[i].name, t.name);
    const SafetensorsEntry* e = file->Find(t.name);
    ASSERT_NE(e, nullptr) << t.name;
    EXPECT_EQ(e->dtype, t.dtype) << t.name;
    EXPECT_EQ(e->shape, t.shape) << t.name;
    const size_t bytes = static_cast<size_t>(e->numel()) * SafetensorsDTypeSize(t.dtype);
    ASSERT_EQ(e->bytes, bytes) << t.name;
    if (bytes > 0) {
      EXPECT_EQ(std::memcmp(e->data, t.data, bytes), 0) << t.name;
    }
  }
  EXPECT_EQ(file->Find("e.empty")->numel(), 0);
  EXPECT_EQ(file->Find("d.scalar_f64")->numel(), 1);
  EXPECT_EQ(file->Find("nope"), nullptr);
  EXPECT_EQ(file->Find("a.f32")->DebugString(), "a.f32 F32 [2, 3, 5]");

  // A copy shares the mapping and outlives the original.
  SafetensorsFile copy = *file;
  file = absl::InternalError("dropped");
  float first;
  std::memcpy(&first, copy.Find("a.f32")->data, 4);
  EXPECT_EQ(first, -7.25f);
}

TEST(SafetensorsTest, EmptyFileAndOverwrite) {
  TempDir dir;
  const std::string path = dir.File("e.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {}, {}).ok());
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->entries().empty());
  EXPECT_TRUE(file->metadata().empty());

  // Writing again replaces the file atomically.
  float v = 1.5f;
  ASSERT_TRUE(WriteSafetensors(path, {{"v", SafetensorsDType::kF32, {1}, &v}}, {}).ok());
  file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->entries().size(), 1u);
}

TEST(SafetensorsTest, KernelDTypeMapping) {
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kF64}) {
    SafetensorsDType st = ToSafetensorsDType(t);
    EXPECT_EQ(SafetensorsDTypeSize(st), kernels::DTypeSize(t));
    ASSERT_TRUE(ToKernelDType(st).has_value());
    EXPECT_EQ(*ToKernelDType(st), t);
    EXPECT_EQ(ParseSafetensorsDType(SafetensorsDTypeName(st)), st);
  }
  EXPECT_FALSE(ToKernelDType(SafetensorsDType::kI64).has_value());
  EXPECT_FALSE(ParseSafetensorsDType("F33").has_value());
}

TEST(SafetensorsTest, WriterRefusesBadArguments) {
  TempDir dir;
  const std::string path = dir.File("bad.safetensors");
  float v[4] = {};
  auto write = [&](std::vector<SafetensorsTensor> t) { return WriteSafetensors(path, t, {}); };
  absl::Status s = write({{"x", SafetensorsDType::kF32, {1}, v}, {"x", SafetensorsDType::kF32, {1}, v}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr(path), HasSubstr("'x' appears twice")));
  s = write({{"__metadata__", SafetensorsDType::kF32, {1}, v}});
  EXPECT_THAT(s.message(), HasSubstr("reserved"));
  s = write({{"", SafetensorsDType::kF32, {1}, v}});
  EXPECT_THAT(s.message(), HasSubstr("empty name"));
  s = write({{"neg", SafetensorsDType::kF32, {2, -1}, v}});
  EXPECT_THAT(s.message(), AllOf(HasSubstr("'neg'"), HasSubstr("[2, -1]")));
  s = write({{"null", SafetensorsDType::kF32, {4}, nullptr}});
  EXPECT_THAT(s.message(), AllOf(HasSubstr("'null'"), HasSubstr("no data")));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open("/nonexistent/dir/w.safetensors");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/dir/w.safetensors"));
}

// Opens bytes written to a file and returns the error (which must name the file).
std::string OpenError(const TempDir& dir, const std::string& bytes) {
  const std::string path = dir.File("corrupt.safetensors");
  WriteBytes(path, bytes);
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  if (f.ok()) return "(opened without error)";
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_THAT(f.status().message(), HasSubstr(path));
  return std::string(f.status().message());
}

TEST(SafetensorsTest, TruncatedFilesAreRefusedClearly) {
  TempDir dir;
  std::vector<float> data(64, 1.0f);
  const std::string good = dir.File("good.safetensors");
  ASSERT_TRUE(WriteSafetensors(good, {{"w", SafetensorsDType::kF32, {8, 8}, data.data()}}, {}).ok());
  const std::string raw = ReadBytes(good);

  EXPECT_THAT(OpenError(dir, ""), HasSubstr("file is 0 bytes, too short"));
  EXPECT_THAT(OpenError(dir, raw.substr(0, 5)), HasSubstr("file is 5 bytes"));
  // Cut inside the header.
  EXPECT_THAT(OpenError(dir, raw.substr(0, 20)), HasSubstr("header length"));
  // Cut inside the data: the tensor no longer fits the buffer.
  EXPECT_THAT(OpenError(dir, raw.substr(0, raw.size() - 4)),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("out of range"),
                    HasSubstr("252-byte data buffer")));
  // Trailing garbage is bytes that belong to no tensor.
  EXPECT_THAT(OpenError(dir, raw + "xyz"), HasSubstr("cover only 256"));
}

TEST(SafetensorsTest, CorruptedHeadersAreRefusedClearly) {
  TempDir dir;
  const std::string f32x2 = std::string(8, '\0');
  EXPECT_THAT(OpenError(dir, RawFile("{\"w\": {\"dtype\": \"F32\", \"sha", "")),
              HasSubstr("not valid JSON"));
  EXPECT_THAT(OpenError(dir, RawFile("[1, 2]", "")), HasSubstr("JSON array, expected an object"));
  // A length field of garbage bytes.
  std::string huge = RawFile("{}", "");
  huge[7] = 0x7f;
  EXPECT_THAT(OpenError(dir, huge), HasSubstr("exceeds"));
  EXPECT_THAT(
      OpenError(dir, RawFile(R"({"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", f32x2)),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("unknown dtype 'F31'")));
  EXPECT_THAT(OpenError(dir, RawFile(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", f32x2)),
              HasSubstr("missing string field 'dtype'"));
  EXPECT_THAT(
      OpenError(dir, RawFile(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x2)),
      HasSubstr("not a list of non-negative integers"));
  EXPECT_THAT(
      OpenError(dir, RawFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", f32x2)),
      HasSubstr("'data_offsets' must be two"));
  EXPECT_THAT(OpenError(dir, RawFile(R"({"__metadata__":{"k":3}})", "")),
              HasSubstr("metadata 'k' is JSON number"));
}

TEST(SafetensorsTest, BadOffsetsAreRefusedClearly) {
  TempDir dir;
  const std::string data(16, '\0');
  // Out of range.
  EXPECT_THAT(
      OpenError(dir, RawFile(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", data)),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("[8, 24) out of range of the 16-byte")));
  // begin > end.
  EXPECT_THAT(
      OpenError(dir, RawFile(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", data)),
      HasSubstr("out of range"));
  // Size does not match dtype * shape.
  EXPECT_THAT(
      OpenError(dir, RawFile(R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,16]}})",
                             data)),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("hold 16 bytes but BF16 [2, 3] needs 12")));
  // A shape whose byte count overflows.
  EXPECT_THAT(OpenError(dir, RawFile(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],
                                          "data_offsets":[0,16]}})",
                                     data)),
              HasSubstr("needs more than 2^63"));
  // Overlapping tensors.
  EXPECT_THAT(OpenError(dir, RawFile(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},
                                          "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                     data)),
              AllOf(HasSubstr("'b'"), HasSubstr("overlap tensor 'a'")));
  // A hole between tensors.
  EXPECT_THAT(OpenError(dir, RawFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                                          "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                     data)),
              HasSubstr("bytes [4, 8) of the data buffer belong to no tensor"));
  // Hand-made but valid, in reverse offset order: entries come back in buffer order.
  const std::string path = dir.File("ok.safetensors");
  WriteBytes(path, RawFile(R"({"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},
                             "a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                           data));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->entries().size(), 2u);
  EXPECT_EQ(f->entries()[0].name, "a");
  EXPECT_EQ(f->entries()[1].name, "b");
}

// A full disk, simulated with RLIMIT_FSIZE (writes past the limit fail with EFBIG once
// SIGXFSZ is ignored): the error names the file and nothing is left under either name.
TEST(SafetensorsTest, FullDiskLeavesNothingHalfWritten) {
  TempDir dir;
  const std::string path = dir.File("big.safetensors");
  // An old version under the final name must survive the failed write intact.
  float old_value = 3.0f;
  ASSERT_TRUE(WriteSafetensors(path, {{"old", SafetensorsDType::kF32, {1}, &old_value}}, {}).ok());
  const std::string old_bytes = ReadBytes(path);

  std::vector<float> big(1 << 16, 2.0f);  // 256 KiB
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  sighandler_t old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  absl::Status s = WriteSafetensors(path, {{"big", SafetensorsDType::kF32, {1 << 16}, big.data()}}, {});
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), AllOf(HasSubstr(path), HasSubstr("writing temporary file")));
  EXPECT_EQ(ReadBytes(path), old_bytes);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1)
      << "the temporary file was left behind";
}

TEST(SafetensorsTest, UnwritableDirectoryNamesTheFile) {
  float v = 1.0f;
  absl::Status s =
      WriteSafetensors("/nonexistent/dir/w.safetensors", {{"v", SafetensorsDType::kF32, {1}, &v}}, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent/dir/w.safetensors"));
}

// ---- Model weights ---------------------------------------------------------------------

struct TinyModel {
  std::unique_ptr<kernels::Backend> backend = kernels::MakeCpuBackend(1);
  std::unique_ptr<GPT> model;

  explicit TinyModel(const GPTConfig& config) {
    absl::StatusOr<std::unique_ptr<GPT>> m = GPT::Create(config, backend.get(), 1, 8);
    EXPECT_TRUE(m.ok()) << m.status();
    if (m.ok()) model = std::move(*m);
  }
  std::vector<float> Param(const Tensor& p) const {
    std::vector<float> out(static_cast<size_t>(p.numel()));
    backend->CopyToHost(out.data(), p.data, p.bytes());
    return out;
  }
};

GPTConfig Tiny() {
  absl::StatusOr<GPTConfig> c = GPTPreset("tiny");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : GPTConfig{};
}

TEST(WeightsTest, RoundTripOnTinyModel) {
  TempDir dir;
  const std::string path = dir.File("w.safetensors");
  TinyModel a(Tiny());
  ASSERT_NE(a.model, nullptr);
  a.model->InitWeights(1234);
  ASSERT_TRUE(SaveWeights(*a.model, path).ok());

  // The file holds every parameter under its name, F32, plus the config.
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->entries().size(), a.model->params().size());
  ASSERT_NE(file->Find("wte"), nullptr);
  EXPECT_EQ(file->Find("wte")->shape,
            (std::vector<int64_t>{Tiny().PaddedVocab(), Tiny().n_embd}));
  ASSERT_NE(file->Find("h.1.mlp.proj.weight"), nullptr);
  EXPECT_EQ(file->metadata().at("n_layer"), std::to_string(Tiny().n_layer));
  EXPECT_EQ(file->metadata().at("padded_vocab_size"), std::to_string(Tiny().PaddedVocab()));

  absl::StatusOr<GPTConfig> config = ReadWeightsConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->DebugString(), Tiny().DebugString());
  EXPECT_EQ(config->PaddedVocab(), Tiny().PaddedVocab());

  TinyModel b(*config);
  ASSERT_NE(b.model, nullptr);
  b.model->InitWeights(999);
  ASSERT_TRUE(LoadWeights(b.model.get(), path).ok());
  for (size_t i = 0; i < a.model->params().size(); ++i) {
    EXPECT_EQ(a.Param(a.model->params()[i]), b.Param(b.model->params()[i]))
        << a.model->params()[i].name;
  }
  // Same weights, same function.
  const std::vector<int32_t> tokens = {1, 5, 9, 200, 3, 0, 17, 42};
  absl::StatusOr<float> la = a.model->Forward(tokens.data(), tokens.data(), 1, 8);
  absl::StatusOr<float> lb = b.model->Forward(tokens.data(), tokens.data(), 1, 8);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_EQ(*la, *lb);
}

TEST(WeightsTest, WrongShapeNamesTheTensorAndLeavesModelUnchanged) {
  TempDir dir;
  TinyModel model(Tiny());
  ASSERT_NE(model.model, nullptr);
  model.model->InitWeights(7);
  const std::vector<float> before = model.Param(model.model->params()[0]);

  // Every parameter right except one, written without config metadata so that the
  // shape check is what fires.
  std::vector<std::vector<float>> storage;
  std::vector<SafetensorsTensor> tensors;
  for (const Tensor& p : model.model->params()) {
    std::vector<int64_t> shape = p.shape;
    if (p.name == "h.1.attn.qkv.weight") shape[0] -= 1;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    storage.emplace_back(static_cast<size_t>(n), 0.5f);
    tensors.push_back({p.name, SafetensorsDType::kF32, shape, storage.back().data()});
  }
  const std::string path = dir.File("wrong.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, {}).ok());
  absl::Status s = LoadWeights(model.model.get(), path);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const int C = Tiny().n_embd;
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr(path), HasSubstr("'h.1.attn.qkv.weight'"),
                    HasSubstr("[" + std::to_string(3 * C - 1) + ", " + std::to_string(C) + "]"),
                    HasSubstr("needs [" + std::to_string(3 * C) + ", " + std::to_string(C) + "]")));
  EXPECT_EQ(model.Param(model.model->params()[0]), before) << "a failed load changed the model";
}

TEST(WeightsTest, MissingExtraAndWrongDtypeTensorsAreNamed) {
  TempDir dir;
  TinyModel model(Tiny());
  ASSERT_NE(model.model, nullptr);
  std::vector<std::vector<float>> storage;
  auto tensors_for = [&](const std::string& skip, SafetensorsDType bf16_for_ln_f) {
    std::vector<SafetensorsTensor> tensors;
    storage.clear();
    storage.reserve(model.model->params().size() + 1);
    for (const Tensor& p : model.model->params()) {
      if (p.name == skip) continue;
      storage.emplace_back(static_cast<size_t>(p.numel()), 0.0f);
      // The f32 storage is larger than a BF16 tensor of the same shape needs; fine.
      SafetensorsDType dt = p.name == "ln_f.bias" ? bf16_for_ln_f : SafetensorsDType::kF32;
      tensors.push_back({p.name, dt, p.shape, storage.back().data()});
    }
    return tensors;
  };
  const std::string path = dir.File("w.safetensors");

  ASSERT_TRUE(WriteSafetensors(path, tensors_for("wpe", SafetensorsDType::kF32), {}).ok());
  absl::Status s = LoadWeights(model.model.get(), path);
  EXPECT_THAT(s.message(), AllOf(HasSubstr(path), HasSubstr("'wpe' is missing")));

  ASSERT_TRUE(WriteSafetensors(path, tensors_for("", SafetensorsDType::kBF16), {}).ok());
  s = LoadWeights(model.model.get(), path);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("'ln_f.bias' is BF16, expected F32")));

  std::vector<SafetensorsTensor> extra = tensors_for("", SafetensorsDType::kF32);
  float x = 0.0f;
  extra.push_back({"h.9.attn.qkv.weight", SafetensorsDType::kF32, {1}, &x});
  ASSERT_TRUE(WriteSafetensors(path, extra, {}).ok());
  s = LoadWeights(model.model.get(), path);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("'h.9.attn.qkv.weight'"), HasSubstr("not a parameter")));
}

TEST(WeightsTest, ConfigMismatchIsNamed) {
  TempDir dir;
  GPTConfig other = Tiny();
  other.n_head = other.n_head * 2;  // same shapes, different model
  TinyModel a(other);
  ASSERT_NE(a.model, nullptr);
  const std::string path = dir.File("w.safetensors");
  ASSERT_TRUE(SaveWeights(*a.model, path).ok());
  TinyModel b(Tiny());
  ASSERT_NE(b.model, nullptr);
  absl::Status s = LoadWeights(b.model.get(), path);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr(path), HasSubstr("n_head = " + std::to_string(other.n_head))));

  // A plain safetensors file has no config.
  float v = 0.0f;
  ASSERT_TRUE(WriteSafetensors(path, {{"v", SafetensorsDType::kF32, {1}, &v}}, {{"format", "pt"}}).ok());
  absl::StatusOr<GPTConfig> c = ReadWeightsConfig(path);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), AllOf(HasSubstr(path), HasSubstr("no 'n_layer'")));
}

}  // namespace
}  // namespace colossus
