#include "colossus/checkpoint/reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/io.h"
#include "colossus/check.h"
#include "file_util.h"

namespace colossus::checkpoint {
namespace {

using colossus::internal::ErrnoStatus;
using colossus::internal::Fd;

std::string Join(const std::string& dir, const std::string& name) {
  return absl::StrCat(dir, "/", name);
}

uint32_t GetU32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t GetU64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads are grouped into spans of whole checksum blocks of about this size, so a large
// piece never needs a buffer of its own size.
constexpr int64_t kReadSpanBytes = int64_t{64} << 20;
// Headers are small (a block table of 8 hex bytes per 4 MiB of data); a corrupted length
// must not make us allocate gigabytes.
constexpr uint32_t kMaxHeaderBytes = 64u << 20;

// An open shard file whose header has been checked against the commit.
struct OpenShard {
  explicit OpenShard(int descriptor) : fd(descriptor) {}
  Fd fd;
  std::string path;
  ShardHeader header;
  int64_t data_offset = 0;
};

absl::StatusOr<std::unique_ptr<OpenShard>> OpenAndCheck(const std::string& step_dir,
                                                        const CommitRecord& record,
                                                        const ShardInfo& info) {
  const std::string path = Join(step_dir, info.file);
  auto shard = std::make_unique<OpenShard>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (shard->fd.get() < 0) return ErrnoStatus(errno, absl::StrCat("opening shard ", path));
  shard->path = path;
  struct stat st;
  if (::fstat(shard->fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
  if (st.st_size != info.bytes) {
    return absl::DataLossError(absl::StrCat(path, ": ", st.st_size, " bytes, COMMIT.json records ",
                                            info.bytes, " (truncated or replaced)"));
  }
  unsigned char prefix[kShardPrefixBytes];
  if (absl::Status s = internal::ReadExact(shard->fd.get(), prefix, kShardPrefixBytes, 0, path);
      !s.ok()) {
    return s;
  }
  if (std::memcmp(prefix, kShardMagic, 8) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not a checkpoint shard (bad magic)"));
  }
  const uint32_t version = GetU32(prefix + 8);
  if (version < kFormatVersion || version > kStridedFormatVersion) {
    return absl::DataLossError(absl::StrCat(path, ": format version ", version,
                                            ", this build reads ", kFormatVersion, " and ",
                                            kStridedFormatVersion));
  }
  const uint32_t header_bytes = GetU32(prefix + 12);
  if (header_bytes > kMaxHeaderBytes || kShardPrefixBytes + header_bytes > info.bytes) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_bytes, " is impossible"));
  }
  std::string text(header_bytes, '\0');
  if (absl::Status s =
          internal::ReadExact(shard->fd.get(), text.data(), header_bytes, kShardPrefixBytes, path);
      !s.ok()) {
    return s;
  }
  if (XXH64(text.data(), text.size(), 0) != GetU64(prefix + 16)) {
    return absl::DataLossError(absl::StrCat(path, ": header checksum mismatch"));
  }
  absl::StatusOr<ShardHeader> header = DecodeShardHeader(text, path);
  if (!header.ok()) return header.status();
  shard->header = *std::move(header);
  const ShardHeader& h = shard->header;
  if (FormatVersionOf(h.pieces) > version) {
    return absl::DataLossError(
        absl::StrCat(path, ": strided pieces in a version ", version, " shard"));
  }
  shard->data_offset =
      (kShardPrefixBytes + header_bytes + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
  if (h.step != record.meta.step || h.rank != info.rank || h.num_shards != info.num_shards ||
      h.numel != record.meta.numel || h.pieces != info.pieces) {
    return absl::DataLossError(absl::StrCat(path, ": header (step ", h.step, ", rank ", h.rank, " of ",
                                            h.num_shards, ") does not match COMMIT.json (step ",
                                            record.meta.step, ", rank ", info.rank, " of ",
                                            info.num_shards, ", same pieces)"));
  }
  if (shard->data_offset + PieceBytes(h.pieces) != info.bytes) {
    return absl::DataLossError(absl::StrCat(path, ": ", info.bytes, " bytes do not hold ",
                                            PieceBytes(h.pieces), " data bytes at offset ",
                                            shard->data_offset));
  }
  return shard;
}

// Data bytes [begin, end) of a shard go to `dst` (in LoadRequest::backend memory).
struct ReadOp {
  int64_t begin = 0;
  int64_t end = 0;
  float* dst = nullptr;
};

bool OnHost(const kernels::Backend* backend) {
  return backend == nullptr || backend->kind() == kernels::DeviceKind::kCPU;
}

// Checks the checksum of every block in data bytes [span_begin, span_end) of `shard`
// (block-aligned; `data` holds them).
absl::Status VerifyBlocks(const OpenShard& shard, const char* data, int64_t span_begin,
                          int64_t span_end) {
  const int64_t B = shard.header.block_bytes;
  for (int64_t at = span_begin; at < span_end; at += B) {
    const int64_t n = std::min(B, span_end - at);
    const uint64_t expect = shard.header.blocks[static_cast<size_t>(at / B)];
    const uint64_t got = XXH64(data + (at - span_begin), static_cast<size_t>(n), 0);
    if (got != expect) {
      return absl::DataLossError(absl::StrCat(
          shard.path, ": checksum mismatch in data block ", at / B, " (file bytes [",
          shard.data_offset + at, ", ", shard.data_offset + at + n, ")): expected ",
          Hex64(expect), ", got ", Hex64(got)));
    }
  }
  return absl::OkStatus();
}

// The verified data bytes [begin, end) of one shard, kept between reads: ops sorted by
// offset often fall in the blocks the previous op read (the rows of a strided piece),
// which are then neither read nor checksummed again.
struct VerifiedSpan {
  std::vector<char> bytes;
  int64_t begin = 0;
  int64_t end = 0;
};

// Reads the whole checksum blocks that hold [op.begin, op.end) (unless `span` holds
// them), verifies each, and copies the requested bytes out.
absl::Status ReadVerified(OpenShard& shard, const ReadOp& op, kernels::Backend* backend,
                          VerifiedSpan& span, int64_t* bytes_read) {
  const int64_t B = shard.header.block_bytes;
  const int64_t data_bytes = PieceBytes(shard.header.pieces);
  const int64_t blocks_per_span = std::max<int64_t>(1, kReadSpanBytes / B);
  for (int64_t k = op.begin / B; k * B < op.end; k += blocks_per_span) {
    // Whole blocks only up to the one holding op.end - 1: never read past the need.
    const int64_t last_block_end = (op.end + B - 1) / B * B;
    const int64_t span_begin = k * B;
    const int64_t span_end = std::min({data_bytes, (k + blocks_per_span) * B, last_block_end});
    const int64_t a = std::max(op.begin, span_begin);
    const int64_t b = std::min(op.end, span_end);
    if (a < span.begin || b > span.end) {
      span.begin = span.end = 0;  // invalid until verified
      span.bytes.resize(static_cast<size_t>(span_end - span_begin));
      if (absl::Status s = internal::ReadExact(shard.fd.get(), span.bytes.data(),
                                               span_end - span_begin,
                                               shard.data_offset + span_begin, shard.path);
          !s.ok()) {
        return s;
      }
      *bytes_read += span_end - span_begin;
      if (absl::Status s = VerifyBlocks(shard, span.bytes.data(), span_begin, span_end); !s.ok()) {
        return s;
      }
      span.begin = span_begin;
      span.end = span_end;
    }
    char* dst = reinterpret_cast<char*>(op.dst) + (a - op.begin);
    const char* src = span.bytes.data() + (a - span.begin);
    if (OnHost(backend)) {
      std::memcpy(dst, src, static_cast<size_t>(b - a));
    } else {
      backend->CopyFromHost(dst, src, static_cast<size_t>(b - a));
    }
  }
  return absl::OkStatus();
}

// floor(a / b) for b > 0.
int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The stored pieces of one vector over every shard of a step, sorted by offset, with
// the running maximum of their span ends: a lookup walks back from the last piece that
// starts before the wanted range only as far as a piece could still reach into it.
struct StoredPiece {
  int shard = 0;
  PieceRef ref;
  int64_t data_at = 0;  // byte offset of its data in the shard's data section
};
struct VectorIndex {
  std::vector<StoredPiece> pieces;
  std::vector<int64_t> max_end;
};

std::map<StateVector, VectorIndex> IndexPieces(const CommitRecord& record) {
  std::map<StateVector, VectorIndex> index;
  for (const ShardInfo& s : record.shards) {
    int64_t data_at = 0;
    for (const PieceRef& p : s.pieces) {
      if (p.numel > 0) index[p.vector].pieces.push_back({s.rank, p, data_at});
      data_at += p.numel * 4;
    }
  }
  for (auto& [v, vi] : index) {
    std::sort(vi.pieces.begin(), vi.pieces.end(), [](const StoredPiece& a, const StoredPiece& b) {
      return a.ref.offset < b.ref.offset;
    });
    int64_t m = 0;
    for (const StoredPiece& p : vi.pieces) {
      m = std::max(m, SpanEnd(p.ref));
      vi.max_end.push_back(m);
    }
  }
  return index;
}

// Appends the reads that fill logical [a, b) of a vector (into `dst`, element a first)
// from the stored pieces that hold it, and the parts found to `got`.
void PlanRun(const VectorIndex& vi, int64_t a, int64_t b, float* dst,
             std::map<int, std::vector<ReadOp>>* reads,
             std::vector<std::pair<int64_t, int64_t>>* got) {
  const auto first_after = std::lower_bound(
      vi.pieces.begin(), vi.pieces.end(), b,
      [](const StoredPiece& p, int64_t v) { return p.ref.offset < v; });
  for (int64_t j = (first_after - vi.pieces.begin()) - 1; j >= 0 && vi.max_end[j] > a; --j) {
    const StoredPiece& sp = vi.pieces[static_cast<size_t>(j)];
    const PieceRef& p = sp.ref;
    const int64_t w = RunLength(p);
    const int64_t stride = IsStrided(p) ? p.stride : w;
    // The runs k of p with p.offset + k*stride < b and p.offset + k*stride + w > a.
    const int64_t k_lo = std::max<int64_t>(0, FloorDiv(a - p.offset - w, stride) + 1);
    const int64_t k_hi = std::min(RunCount(p) - 1, FloorDiv(b - 1 - p.offset, stride));
    for (int64_t k = k_lo; k <= k_hi; ++k) {
      const int64_t run_begin = p.offset + k * stride;
      const int64_t x = std::max(a, run_begin);
      const int64_t y = std::min(b, run_begin + w);
      if (x >= y) continue;
      const int64_t at = sp.data_at + (k * w + (x - run_begin)) * 4;
      (*reads)[sp.shard].push_back({at, at + (y - x) * 4, dst + (x - a)});
      got->push_back({x, y});
    }
  }
}

// Sorts one shard's reads by offset and joins those that continue each other both in
// the file and in memory (consecutive rows of a strided piece loaded into a packed
// buffer are one read).
void CoalesceReads(std::vector<ReadOp>& ops) {
  std::sort(ops.begin(), ops.end(), [](const ReadOp& a, const ReadOp& b) { return a.begin < b.begin; });
  size_t out = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (out > 0) {
      ReadOp& last = ops[out - 1];
      if (last.end == ops[i].begin && last.dst + (last.end - last.begin) / 4 == ops[i].dst) {
        last.end = ops[i].end;
        continue;
      }
    }
    ops[out++] = ops[i];
  }
  ops.resize(out);
}

absl::StatusOr<CommitRecord> ReadCommit(const std::string& step_dir) {
  const std::string path = Join(step_dir, kCommitFileName);
  absl::StatusOr<std::string> text = internal::ReadSmallFile(path);
  if (!text.ok()) return text.status();
  return DecodeCommit(*text, path);
}

// Whether a failed load should move on to the previous committed step: damage to this
// step's files (DataLoss, a vanished file, an I/O error) yes; a problem with the run
// itself (its config, its request, permissions) no, since every step would fail alike.
bool FallsBack(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::StatusOr<std::vector<CommittedStep>> ListCommitted(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = internal::ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<CommittedStep> out;
  for (const std::string& name : *names) {
    CommittedStep c;
    if (!ParseStepDirName(name, &c.step)) continue;
    c.step_dir = Join(dir, name);
    if (!internal::Exists(Join(c.step_dir, kCommitFileName))) continue;  // not a checkpoint
    absl::StatusOr<CommitRecord> record = ReadCommit(c.step_dir);
    if (!record.ok()) {
      c.status = absl::DataLossError(record.status().message());
    } else if (record->meta.step != c.step) {
      c.status = absl::DataLossError(absl::StrCat(c.step_dir, "/", kCommitFileName, ": records step ",
                                                  record->meta.step));
    } else {
      c.record = *std::move(record);
      for (const ShardInfo& s : c.record.shards) {
        const std::string path = Join(c.step_dir, s.file);
        absl::StatusOr<int64_t> size = internal::FileSize(path);
        if (!size.ok()) {
          c.status = absl::DataLossError(absl::StrCat("shard missing: ", size.status().message()));
          break;
        }
        if (*size != s.bytes) {
          c.status = absl::DataLossError(absl::StrCat(path, ": ", *size, " bytes, COMMIT.json records ",
                                                      s.bytes, " (truncated or replaced)"));
          break;
        }
      }
    }
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(),
            [](const CommittedStep& a, const CommittedStep& b) { return a.step > b.step; });
  return out;
}

absl::StatusOr<CommittedStep> FindLatestCommitted(const std::string& dir) {
  absl::StatusOr<std::vector<CommittedStep>> all = ListCommitted(dir);
  if (!all.ok()) return all.status();
  for (CommittedStep& c : *all) {
    if (c.status.ok()) return std::move(c);
  }
  return absl::NotFoundError(absl::StrCat("no usable committed checkpoint under ", dir, " (",
                                          all->size(), " committed step(s) with damaged shards)"));
}

absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const std::string& step_dir,
                                                const LoadRequest& request) {
  absl::StatusOr<CommitRecord> record = ReadCommit(step_dir);
  if (!record.ok()) return record.status();
  const std::string commit_path = Join(step_dir, kCommitFileName);
  if (absl::Status s = CheckModelConfig(record->meta.model, request.model, commit_path); !s.ok()) {
    return s;
  }
  if (request.check_optimizer) {
    if (absl::Status s =
            CheckOptimizerConfig(record->meta.optimizer, request.optimizer, commit_path);
        !s.ok()) {
      return s;
    }
  }
  const int64_t P = record->meta.numel;

  // Which bytes of which shard go where: every wanted run is cut along the runs of the
  // stored pieces that hold it (a shard's pieces sit back to back in its data section;
  // a strided piece's runs likewise). The saved layout does not matter: a piece is a
  // place in the canonical state, however many ranks split it and however.
  const std::map<StateVector, VectorIndex> index = IndexPieces(*record);
  const VectorIndex kNone;
  std::map<int, std::vector<ReadOp>> reads;  // by shard rank
  std::vector<std::pair<int64_t, int64_t>> got;
  for (const DestPiece& want : request.pieces) {
    const PieceRef w = Normalized(want.ref);
    if (const std::string bad = WellFormed(w); !bad.empty() || SpanEnd(w) > P) {
      return absl::InvalidArgumentError(absl::StrCat(
          step_dir, ": requested ", StateVectorName(w.vector), " [", w.offset, ", ", SpanEnd(w),
          ") is outside [0, ", P, ")", bad.empty() ? "" : " or malformed: ", bad));
    }
    const auto it = index.find(w.vector);
    const VectorIndex& vi = it == index.end() ? kNone : it->second;
    const int64_t run = RunLength(w);
    for (int64_t k = 0; k < RunCount(w); ++k) {
      const int64_t a = w.offset + k * w.stride, b = a + run;
      got.clear();
      PlanRun(vi, a, b, want.data + k * run, &reads, &got);
      std::sort(got.begin(), got.end());
      int64_t covered = a;
      for (const auto& [x, y] : got) {
        if (x > covered) break;
        covered = std::max(covered, y);
      }
      if (covered < b) {
        return absl::FailedPreconditionError(absl::StrCat(
            step_dir, ": the checkpoint does not hold ", StateVectorName(w.vector), " [", covered,
            ", ", b, ")"));
      }
    }
  }

  LoadedCheckpoint out;
  out.step_dir = step_dir;
  out.meta = record->meta;
  std::map<int, std::unique_ptr<OpenShard>> opened;
  for (auto& [rank, ops] : reads) {
    absl::StatusOr<std::unique_ptr<OpenShard>> shard =
        OpenAndCheck(step_dir, *record, record->shards[static_cast<size_t>(rank)]);
    if (!shard.ok()) return shard.status();
    // In file order, so the reads sweep each file forward.
    CoalesceReads(ops);
    VerifiedSpan span;
    for (const ReadOp& op : ops) {
      if (absl::Status s = ReadVerified(**shard, op, request.backend, span, &out.bytes_read);
          !s.ok()) {
        return s;
      }
    }
    opened[rank] = *std::move(shard);
  }
  if (request.rank >= 0 && request.rank < static_cast<int>(record->shards.size())) {
    auto it = opened.find(request.rank);
    if (it == opened.end()) {
      absl::StatusOr<std::unique_ptr<OpenShard>> shard =
          OpenAndCheck(step_dir, *record, record->shards[static_cast<size_t>(request.rank)]);
      if (!shard.ok()) return shard.status();
      it = opened.emplace(request.rank, *std::move(shard)).first;
    }
    out.rng = it->second->header.rng;
    out.rng_found = true;
  }
  return out;
}

absl::StatusOr<LoadOutcome> LoadLatestValid(const std::string& dir, const LoadRequest& request,
                                            const AgreeFn& agree, std::vector<SkippedStep>* skipped) {
  if (skipped != nullptr) skipped->clear();
  absl::StatusOr<std::vector<CommittedStep>> all = ListCommitted(dir);
  if (!all.ok()) return all.status();
  if (all->empty()) {
    return absl::NotFoundError(absl::StrCat("no committed checkpoint under ", dir));
  }
  LoadOutcome outcome;
  for (const CommittedStep& c : *all) {
    absl::Status why = c.status;
    if (why.ok()) {
      absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(c.step_dir, request);
      if (loaded.ok()) {
        outcome.loaded = *std::move(loaded);
      } else {
        why = loaded.status();
      }
    }
    if (!why.ok() && !FallsBack(why)) return why;
    bool everyone = why.ok();
    const bool seen_here = !why.ok();
    if (agree) {
      absl::StatusOr<bool> all_ok = agree(why.ok());
      if (!all_ok.ok()) return all_ok.status();
      everyone = *all_ok;
      if (why.ok() && !everyone) {
        why = absl::AbortedError(absl::StrCat(c.step_dir, ": another rank could not load this step"));
      }
    }
    if (everyone) {
      if (skipped != nullptr) *skipped = outcome.skipped;
      return outcome;
    }
    outcome.skipped.push_back({c.step, c.step_dir, why, seen_here});
  }
  if (skipped != nullptr) *skipped = outcome.skipped;
  std::vector<std::string> reasons;
  for (const SkippedStep& s : outcome.skipped) {
    reasons.push_back(absl::StrCat("step ", s.step, ": ", s.why.message()));
  }
  return absl::DataLossError(absl::StrCat("no committed checkpoint under ", dir,
                                          " loads: ", absl::StrJoin(reasons, "; ")));
}

absl::Status DiscardStepsAfter(const std::string& dir, int64_t step) {
  absl::StatusOr<std::vector<std::string>> names = internal::ListDir(dir);
  if (!names.ok()) return names.status().code() == absl::StatusCode::kNotFound ? absl::OkStatus() : names.status();
  bool changed = false;
  for (const std::string& name : *names) {
    int64_t s = 0;
    if (!ParseStepDirName(name, &s) || s <= step) continue;
    const std::string path = Join(dir, name);
    changed = true;
    if (internal::Exists(Join(path, kCommitFileName))) {
      const std::string to = absl::StrCat(path, ".discarded-", static_cast<int64_t>(std::time(nullptr)));
      if (::rename(path.c_str(), to.c_str()) != 0) {
        return ErrnoStatus(errno, absl::StrCat("moving ", path, " aside to ", to));
      }
    } else if (absl::Status st = internal::RemoveTree(path, kCommitFileName); !st.ok()) {
      return st;
    }
  }
  if (changed) internal::SyncDir(dir);
  return absl::OkStatus();
}

absl::Status VerifyCheckpoint(const std::string& step_dir) {
  absl::StatusOr<CommitRecord> record = ReadCommit(step_dir);
  if (!record.ok()) return record.status();
  std::vector<char> buffer(size_t{8} << 20);
  for (const ShardInfo& s : record->shards) {
    const std::string path = Join(step_dir, s.file);
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return ErrnoStatus(errno, absl::StrCat("opening shard ", path));
    std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> state(XXH64_createState(),
                                                                     &XXH64_freeState);
    CHECK(state != nullptr && XXH64_reset(state.get(), 0) == XXH_OK);
    int64_t total = 0;
    while (true) {
      const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, absl::StrCat("reading ", path));
      }
      if (n == 0) break;
      CHECK(XXH64_update(state.get(), buffer.data(), static_cast<size_t>(n)) == XXH_OK);
      total += n;
    }
    if (total != s.bytes) {
      return absl::DataLossError(absl::StrCat(path, ": ", total, " bytes, COMMIT.json records ", s.bytes));
    }
    if (const uint64_t got = XXH64_digest(state.get()); got != s.xxh64) {
      return absl::DataLossError(absl::StrCat(path, ": file checksum ", Hex64(got),
                                              ", COMMIT.json records ", Hex64(s.xxh64)));
    }
  }
  return absl::OkStatus();
}

}  // namespace colossus::checkpoint
