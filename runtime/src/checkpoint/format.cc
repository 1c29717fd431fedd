#include "colossus/checkpoint/format.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace colossus::checkpoint {
namespace {

using Json = nlohmann::ordered_json;

void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutU64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::string HexBytes(const std::string& raw) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

bool UnhexBytes(const std::string& hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    int v = 0;
    for (size_t k = i; k < i + 2; ++k) {
      const char c = hex[k];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v |= c - 'a' + 10;
      } else {
        return false;
      }
    }
    out->push_back(static_cast<char>(v));
  }
  return true;
}

Json PiecesJson(const std::vector<PieceRef>& pieces) {
  Json out = Json::array();
  for (const PieceRef& p : pieces) {
    Json j = {{"vector", StateVectorName(p.vector)}, {"offset", p.offset}, {"numel", p.numel}};
    if (IsStrided(p)) {
      j["run"] = p.run;
      j["stride"] = p.stride;
    }
    out.push_back(std::move(j));
  }
  return out;
}

Json ModelJson(const GPTConfig& c) {
  return {{"n_layer", c.n_layer},       {"n_head", c.n_head},
          {"n_embd", c.n_embd},         {"block_size", c.block_size},
          {"vocab_size", c.vocab_size}, {"padded_vocab_size", c.PaddedVocab()}};
}

Json OptimizerJson(const OptimizerConfig& c) {
  return {{"lr", c.lr},
          {"min_lr", c.min_lr},
          {"warmup_steps", c.warmup_steps},
          {"total_steps", c.total_steps},
          {"beta1", c.beta1},
          {"beta2", c.beta2},
          {"eps", c.eps},
          {"weight_decay", c.weight_decay},
          {"grad_clip", c.grad_clip}};
}

Json MetaJson(const StepMeta& m) {
  Json layout = {{"dp", m.dp}, {"tp", m.tp}};
  if (m.zero >= 0) layout["zero"] = m.zero;
  return {{"step", m.step},
          {"numel", m.numel},
          {"data_position", m.data_position},
          {"layout", std::move(layout)},
          {"model_config", ModelJson(m.model)},
          {"optimizer_config", OptimizerJson(m.optimizer)}};
}

Json ShardJson(const ShardInfo& s) {
  return {{"rank", s.rank},   {"num_shards", s.num_shards}, {"file", s.file},
          {"bytes", s.bytes}, {"xxh64", Hex64(s.xxh64)},    {"pieces", PiecesJson(s.pieces)}};
}

// Field access that turns a missing key or a wrong type into one error naming the
// field; `err` keeps the first problem, later reads return defaults.
class Reader {
 public:

  template <typename T>
  T Get(const Json& obj, const std::string& field, const std::string& path) {
    if (!err_.empty()) return T{};
    auto it = obj.find(field);
    if (it == obj.end()) {
      err_ = absl::StrCat("missing field ", path);
      return T{};
    }
    try {
      return it->template get<T>();
    } catch (const std::exception&) {
      err_ = absl::StrCat("field ", path, " has the wrong type");
      return T{};
    }
  }
  const Json& Obj(const Json& obj, const std::string& field, const std::string& path) {
    static const Json kEmpty = Json::object();
    if (!err_.empty()) return kEmpty;
    auto it = obj.find(field);
    if (it == obj.end() || !(it->is_object() || it->is_array())) {
      err_ = absl::StrCat("missing or malformed field ", path);
      return kEmpty;
    }
    return *it;
  }
  void Fail(std::string msg) {
    if (err_.empty()) err_ = std::move(msg);
  }
  bool ok() const { return err_.empty(); }
  const std::string& error() const { return err_; }

 private:
  std::string err_;
};

std::vector<PieceRef> ReadPieces(Reader& r, const Json& arr, const std::string& path) {
  std::vector<PieceRef> out;
  if (!arr.is_array()) {
    r.Fail(absl::StrCat("field ", path, " is not an array"));
    return out;
  }
  for (size_t i = 0; i < arr.size() && r.ok(); ++i) {
    const std::string at = absl::StrCat(path, "[", i, "]");
    PieceRef p;
    const std::string name = r.Get<std::string>(arr[i], "vector", at + ".vector");
    if (r.ok() && !ParseStateVector(name, &p.vector)) {
      r.Fail(absl::StrCat("field ", at, ".vector: unknown vector \"", name, "\""));
    }
    p.offset = r.Get<int64_t>(arr[i], "offset", at + ".offset");
    p.numel = r.Get<int64_t>(arr[i], "numel", at + ".numel");
    if (r.ok() && arr[i].contains("run")) {
      p.run = r.Get<int64_t>(arr[i], "run", at + ".run");
      p.stride = r.Get<int64_t>(arr[i], "stride", at + ".stride");
    }
    if (r.ok()) {
      if (const std::string bad = WellFormed(p); !bad.empty()) {
        r.Fail(absl::StrCat("field ", at, ": ", bad));
      }
    }
    out.push_back(p);
  }
  return out;
}

StepMeta ReadMeta(Reader& r, const Json& j) {
  StepMeta m;
  m.step = r.Get<int64_t>(j, "step", "step");
  m.numel = r.Get<int64_t>(j, "numel", "numel");
  m.data_position = r.Get<int64_t>(j, "data_position", "data_position");
  const Json& layout = r.Obj(j, "layout", "layout");
  m.dp = r.Get<int>(layout, "dp", "layout.dp");
  m.tp = r.Get<int>(layout, "tp", "layout.tp");
  // Optional: commits written before it existed lack it.
  if (r.ok() && layout.is_object() && layout.contains("zero")) {
    m.zero = r.Get<int>(layout, "zero", "layout.zero");
    if (r.ok() && m.zero != 0 && m.zero != 1) r.Fail("layout.zero must be 0 or 1");
  }
  const Json& mc = r.Obj(j, "model_config", "model_config");
  m.model.n_layer = r.Get<int>(mc, "n_layer", "model_config.n_layer");
  m.model.n_head = r.Get<int>(mc, "n_head", "model_config.n_head");
  m.model.n_embd = r.Get<int>(mc, "n_embd", "model_config.n_embd");
  m.model.block_size = r.Get<int>(mc, "block_size", "model_config.block_size");
  m.model.vocab_size = r.Get<int>(mc, "vocab_size", "model_config.vocab_size");
  m.model.padded_vocab_size = r.Get<int>(mc, "padded_vocab_size", "model_config.padded_vocab_size");
  const Json& oc = r.Obj(j, "optimizer_config", "optimizer_config");
  m.optimizer.lr = r.Get<float>(oc, "lr", "optimizer_config.lr");
  m.optimizer.min_lr = r.Get<float>(oc, "min_lr", "optimizer_config.min_lr");
  m.optimizer.warmup_steps = r.Get<int64_t>(oc, "warmup_steps", "optimizer_config.warmup_steps");
  m.optimizer.total_steps = r.Get<int64_t>(oc, "total_steps", "optimizer_config.total_steps");
  m.optimizer.beta1 = r.Get<float>(oc, "beta1", "optimizer_config.beta1");
  m.optimizer.beta2 = r.Get<float>(oc, "beta2", "optimizer_config.beta2");
  m.optimizer.eps = r.Get<float>(oc, "eps", "optimizer_config.eps");
  m.optimizer.weight_decay = r.Get<float>(oc, "weight_decay", "optimizer_config.weight_decay");
  m.optimizer.grad_clip = r.Get<float>(oc, "grad_clip", "optimizer_config.grad_clip");
  if (r.ok() && (m.step < 0 || m.numel < 0 || m.dp < 1 || m.tp < 1)) {
    r.Fail("negative step or numel, or a layout below 1");
  }
  return m;
}

ShardInfo ReadShard(Reader& r, const Json& j, const std::string& path) {
  ShardInfo s;
  s.rank = r.Get<int>(j, "rank", path + ".rank");
  s.num_shards = r.Get<int>(j, "num_shards", path + ".num_shards");
  s.file = r.Get<std::string>(j, "file", path + ".file");
  s.bytes = r.Get<int64_t>(j, "bytes", path + ".bytes");
  const std::string hex = r.Get<std::string>(j, "xxh64", path + ".xxh64");
  if (r.ok() && !ParseHex64(hex, &s.xxh64)) r.Fail(absl::StrCat("field ", path, ".xxh64 is not 16 hex digits"));
  // A file name that climbs out of the step directory is never ours.
  if (r.ok() && (s.file.empty() || s.file.find('/') != std::string::npos || s.file == "." ||
                 s.file == "..")) {
    r.Fail(absl::StrCat("field ", path, ".file is not a file name: \"", s.file, "\""));
  }
  s.pieces = ReadPieces(r, r.Obj(j, "pieces", path + ".pieces"), path + ".pieces");
  return s;
}

absl::StatusOr<Json> Parse(const std::string& text) {
  try {
    return Json::parse(text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
}

template <typename T>
absl::Status Differs(const std::string& path, const std::string& field, const T& saved,
                     const T& run) {
  if (saved == run) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(path, ": ", field, " is ", saved,
                                                    " in the checkpoint, ", run,
                                                    " in this run"));
}

}  // namespace

std::string StepDirName(int64_t step) { return absl::StrFormat("step-%08d", step); }

bool ParseStepDirName(const std::string& name, int64_t* step) {
  constexpr size_t kPrefix = 5;  // "step-"
  if (name.size() <= kPrefix || name.compare(0, kPrefix, "step-") != 0) return false;
  if (name.size() - kPrefix > 18) return false;  // fits int64
  int64_t v = 0;
  for (size_t i = kPrefix; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + (name[i] - '0');
  }
  *step = v;
  return true;
}

std::string ShardFileName(int rank, int num_shards) {
  return absl::StrCat("shard-", rank, "-of-", num_shards, ".bin");
}
std::string ShardReportFileName(int rank, int num_shards) {
  return absl::StrCat("shard-", rank, "-of-", num_shards, ".json");
}
std::string StepDir(const std::string& dir, int64_t step) {
  return absl::StrCat(dir, "/", StepDirName(step));
}

std::string Hex64(uint64_t v) { return absl::StrFormat("%016x", v); }

bool ParseHex64(const std::string& s, uint64_t* out) {
  if (s.size() != 16) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

std::string EncodeShardReport(const ShardReport& report) {
  Json j = MetaJson(report.meta);
  j["shard"] = ShardJson(report.shard);
  return j.dump();
}

absl::StatusOr<ShardReport> DecodeShardReport(const std::string& text, const std::string& what) {
  absl::StatusOr<Json> j = Parse(text);
  if (!j.ok() || !j->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": shard report is not a JSON object"));
  }
  Reader r;
  ShardReport out;
  out.meta = ReadMeta(r, *j);
  out.shard = ReadShard(r, r.Obj(*j, "shard", "shard"), "shard");
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", r.error()));
  return out;
}

std::string EncodeCommit(const CommitRecord& record) {
  uint32_t version = kFormatVersion;
  for (const ShardInfo& s : record.shards) version = std::max(version, FormatVersionOf(s.pieces));
  Json j = {{"format", "colossus-checkpoint"}, {"version", version}};
  const Json meta = MetaJson(record.meta);
  for (auto it = meta.begin(); it != meta.end(); ++it) j[it.key()] = *it;
  j["num_shards"] = record.shards.size();
  Json shards = Json::array();
  for (const ShardInfo& s : record.shards) shards.push_back(ShardJson(s));
  j["shards"] = std::move(shards);
  return j.dump(1) + "\n";
}

absl::StatusOr<CommitRecord> DecodeCommit(const std::string& text, const std::string& path) {
  absl::StatusOr<Json> j = Parse(text);
  if (!j.ok() || !j->is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": not a JSON object (",
                                            j.ok() ? "wrong type" : j.status().message(), ")"));
  }
  Reader r;
  const std::string format = r.Get<std::string>(*j, "format", "format");
  const uint32_t version = r.Get<uint32_t>(*j, "version", "version");
  if (r.ok() && (format != "colossus-checkpoint" || version < kFormatVersion ||
                 version > kStridedFormatVersion)) {
    r.Fail(absl::StrCat("format \"", format, "\" version ", version, " is not colossus-checkpoint ",
                        kFormatVersion, " or ", kStridedFormatVersion));
  }
  CommitRecord out;
  out.meta = ReadMeta(r, *j);
  const int num_shards = r.Get<int>(*j, "num_shards", "num_shards");
  const Json& shards = r.Obj(*j, "shards", "shards");
  if (r.ok() && (!shards.is_array() || num_shards < 1 ||
                 static_cast<int>(shards.size()) != num_shards)) {
    r.Fail(absl::StrCat("num_shards ", num_shards, " does not match the shards listed"));
  }
  for (size_t i = 0; r.ok() && i < shards.size(); ++i) {
    out.shards.push_back(ReadShard(r, shards[i], absl::StrCat("shards[", i, "]")));
  }
  if (!r.ok()) return absl::DataLossError(absl::StrCat(path, ": ", r.error()));
  std::sort(out.shards.begin(), out.shards.end(),
            [](const ShardInfo& a, const ShardInfo& b) { return a.rank < b.rank; });
  for (int i = 0; i < num_shards; ++i) {
    const ShardInfo& s = out.shards[i];
    if (s.rank != i || s.num_shards != num_shards) {
      return absl::DataLossError(absl::StrCat(path, ": shard ranks are not 0..", num_shards - 1,
                                              " once each (found rank ", s.rank, " of ",
                                              s.num_shards, ")"));
    }
    if (FormatVersionOf(s.pieces) > version) {
      return absl::DataLossError(absl::StrCat(path, ": shard ", s.file,
                                              " has strided pieces in a version ", version,
                                              " commit"));
    }
    for (const PieceRef& p : s.pieces) {
      if (SpanEnd(p) > out.meta.numel) {  // well formed (ReadPieces): no overflow
        return absl::DataLossError(absl::StrCat(path, ": shard ", s.file, " piece ",
                                                StateVectorName(p.vector), " [", p.offset, ", ",
                                                SpanEnd(p), ") is outside [0, ", out.meta.numel,
                                                ")"));
      }
    }
  }
  return out;
}

absl::Status CheckCoverage(const std::vector<ShardInfo>& shards, int64_t numel) {
  std::map<StateVector, std::vector<std::pair<int64_t, int64_t>>> runs;
  for (const ShardInfo& s : shards) {
    for (const PieceRef& p : s.pieces) {
      const int64_t w = RunLength(p);
      for (int64_t k = 0; k < RunCount(p); ++k) {
        const int64_t a = p.offset + k * p.stride;
        runs[p.vector].push_back({a, a + w});
      }
    }
  }
  for (auto& [v, r] : runs) {
    std::sort(r.begin(), r.end());
    int64_t covered = 0;
    for (const auto& [a, b] : r) {
      if (a > covered) break;
      covered = std::max(covered, b);
    }
    if (covered < numel) {
      int64_t gap_end = numel;
      for (const auto& [a, b] : r) {
        if (a > covered) {
          gap_end = a;
          break;
        }
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "vector ", StateVectorName(v), ": elements [", covered, ", ", gap_end,
          ") are in no shard (", numel, " elements in all)"));
    }
  }
  return absl::OkStatus();
}

uint32_t FormatVersionOf(const std::vector<PieceRef>& pieces) {
  for (const PieceRef& p : pieces) {
    if (IsStrided(p)) return kStridedFormatVersion;
  }
  return kFormatVersion;
}

int64_t PieceBytes(const std::vector<PieceRef>& pieces) {
  int64_t n = 0;
  for (const PieceRef& p : pieces) n += p.numel;
  return n * 4;
}

std::string EncodeShardPrefix(const ShardHeader& h) {
  Json j = {{"format", "colossus-checkpoint-shard"},
            {"step", h.step},
            {"rank", h.rank},
            {"num_shards", h.num_shards},
            {"numel", h.numel},
            {"data_position", h.data_position},
            {"pieces", PiecesJson(h.pieces)},
            {"block_bytes", h.block_bytes}};
  Json blocks = Json::array();
  for (uint64_t b : h.blocks) blocks.push_back(Hex64(b));
  j["blocks"] = std::move(blocks);
  Json rng = Json::object();
  for (const auto& [name, bytes] : h.rng) rng[name] = HexBytes(bytes);
  j["rng"] = std::move(rng);
  const std::string text = j.dump();
  const int64_t used = kShardPrefixBytes + static_cast<int64_t>(text.size());
  const int64_t data_offset = (used + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
  std::string out(static_cast<size_t>(data_offset), '\0');
  std::memcpy(out.data(), kShardMagic, 8);
  PutU32(out.data() + 8, FormatVersionOf(h.pieces));
  PutU32(out.data() + 12, static_cast<uint32_t>(text.size()));
  PutU64(out.data() + 16, XXH64(text.data(), text.size(), 0));
  std::memcpy(out.data() + kShardPrefixBytes, text.data(), text.size());
  return out;
}

absl::StatusOr<ShardHeader> DecodeShardHeader(const std::string& text, const std::string& path) {
  absl::StatusOr<Json> j = Parse(text);
  if (!j.ok() || !j->is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": shard header is not a JSON object"));
  }
  Reader r;
  ShardHeader h;
  if (r.Get<std::string>(*j, "format", "format") != "colossus-checkpoint-shard" && r.ok()) {
    r.Fail("format is not colossus-checkpoint-shard");
  }
  h.step = r.Get<int64_t>(*j, "step", "step");
  h.rank = r.Get<int>(*j, "rank", "rank");
  h.num_shards = r.Get<int>(*j, "num_shards", "num_shards");
  h.numel = r.Get<int64_t>(*j, "numel", "numel");
  h.data_position = r.Get<int64_t>(*j, "data_position", "data_position");
  h.pieces = ReadPieces(r, r.Obj(*j, "pieces", "pieces"), "pieces");
  h.block_bytes = r.Get<int64_t>(*j, "block_bytes", "block_bytes");
  const Json& blocks = r.Obj(*j, "blocks", "blocks");
  for (size_t i = 0; r.ok() && i < blocks.size(); ++i) {
    uint64_t v = 0;
    if (!blocks[i].is_string() || !ParseHex64(blocks[i].get<std::string>(), &v)) {
      r.Fail(absl::StrCat("field blocks[", i, "] is not 16 hex digits"));
    }
    h.blocks.push_back(v);
  }
  const Json& rng = r.Obj(*j, "rng", "rng");
  for (auto it = rng.begin(); r.ok() && it != rng.end(); ++it) {
    std::string raw;
    if (!it->is_string() || !UnhexBytes(it->get<std::string>(), &raw)) {
      r.Fail(absl::StrCat("field rng.", it.key(), " is not hex bytes"));
    }
    h.rng[it.key()] = raw;
  }
  if (r.ok() && h.block_bytes <= 0) r.Fail("block_bytes must be > 0");
  if (r.ok()) {
    const int64_t data = PieceBytes(h.pieces);
    const int64_t expect = (data + h.block_bytes - 1) / h.block_bytes;
    if (static_cast<int64_t>(h.blocks.size()) != expect) {
      r.Fail(absl::StrCat(h.blocks.size(), " block checksums for ", data, " data bytes in blocks of ",
                          h.block_bytes, " (expected ", expect, ")"));
    }
  }
  if (!r.ok()) return absl::DataLossError(absl::StrCat(path, ": shard header: ", r.error()));
  return h;
}

absl::Status CheckModelConfig(const GPTConfig& saved, const GPTConfig& run, const std::string& path) {
  const std::pair<const char*, std::pair<int, int>> fields[] = {
      {"n_layer", {saved.n_layer, run.n_layer}},
      {"n_head", {saved.n_head, run.n_head}},
      {"n_embd", {saved.n_embd, run.n_embd}},
      {"block_size", {saved.block_size, run.block_size}},
      {"vocab_size", {saved.vocab_size, run.vocab_size}},
      {"padded_vocab_size", {saved.PaddedVocab(), run.PaddedVocab()}}};
  for (const auto& [name, v] : fields) {
    if (absl::Status s = Differs(path, absl::StrCat("model_config.", name), v.first, v.second);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOptimizerConfig(const OptimizerConfig& saved, const OptimizerConfig& run,
                                  const std::string& path) {
  const std::pair<const char*, std::pair<float, float>> floats[] = {
      {"lr", {saved.lr, run.lr}},
      {"min_lr", {saved.min_lr, run.min_lr}},
      {"beta1", {saved.beta1, run.beta1}},
      {"beta2", {saved.beta2, run.beta2}},
      {"eps", {saved.eps, run.eps}},
      {"weight_decay", {saved.weight_decay, run.weight_decay}},
      {"grad_clip", {saved.grad_clip, run.grad_clip}}};
  for (const auto& [name, v] : floats) {
    if (absl::Status s = Differs(path, absl::StrCat("optimizer_config.", name), v.first, v.second);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = Differs(path, "optimizer_config.warmup_steps", saved.warmup_steps,
                               run.warmup_steps);
      !s.ok()) {
    return s;
  }
  return Differs(path, "optimizer_config.total_steps", saved.total_steps, run.total_steps);
}

}  // namespace colossus::checkpoint
