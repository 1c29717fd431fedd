#include "colossus/checkpoint/writer.h"

#include <sys/mman.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "checkpoint/io.h"
#include "colossus/check.h"
#include "file_util.h"

namespace colossus::checkpoint {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Page-aligned host memory from mmap, optionally pre-faulted (MAP_POPULATE), so that a
// save's copy runs at memory speed instead of taking a page fault every 4 KiB.
class HostBuffer {
 public:
  HostBuffer() = default;
  ~HostBuffer() { Release(); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  absl::Status Ensure(int64_t bytes) {
    if (bytes <= capacity_) return absl::OkStatus();
    Release();
    void* p = ::mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) {
      return absl::ResourceExhaustedError(
          absl::StrCat("checkpoint staging buffer of ", bytes, " bytes: mmap failed"));
    }
    data_ = static_cast<char*>(p);
    capacity_ = bytes;
    return absl::OkStatus();
  }
  char* data() const { return data_; }

 private:
  void Release() {
    if (data_ != nullptr) ::munmap(data_, static_cast<size_t>(capacity_));
    data_ = nullptr;
    capacity_ = 0;
  }
  char* data_ = nullptr;
  int64_t capacity_ = 0;
};

// A source piece staged at byte `staged` of the buffer.
struct StagedCopy {
  const float* src;
  int64_t staged;
  int64_t bytes;
};

// Copies host memory with `threads` threads, each taking a contiguous share of the
// total bytes (pieces are split where a share ends).
void ParallelCopy(char* dst, const std::vector<StagedCopy>& copies, int64_t total, int threads) {
  threads = static_cast<int>(std::clamp<int64_t>(total >> 24, 1, std::max(1, threads)));
  auto run = [&](int64_t begin, int64_t end) {
    for (const StagedCopy& c : copies) {
      const int64_t a = std::max(begin, c.staged);
      const int64_t b = std::min(end, c.staged + c.bytes);
      if (a < b) {
        std::memcpy(dst + a, reinterpret_cast<const char*>(c.src) + (a - c.staged),
                    static_cast<size_t>(b - a));
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    pool.emplace_back(run, total * t / threads, total * (t + 1) / threads);
  }
  run(0, total / threads);
  for (std::thread& th : pool) th.join();
}

// One save, as the background thread sees it; its data is the staging buffer.
struct SaveJob {
  StepMeta meta;
  std::vector<PieceRef> pieces;  // merged, in file order
  std::map<std::string, std::string> rng;
  int64_t data_bytes = 0;
  std::string step_dir;
};

CompletedSave WriteShard(const CheckpointWriterOptions& options, const char* data,
                         const SaveJob& job);

// Appends piece `q` to `p` when q's data following p's is q's logical continuation:
// contiguous runs that touch become one run, and equal runs at a constant stride (a
// caller that lists a column block row by row) become one strided piece.
bool TryAppend(PieceRef* p, const PieceRef& q) {
  if (q.numel == 0) return true;
  if (p->vector != q.vector) return false;
  if (!IsStrided(*p) && !IsStrided(q) && p->offset + p->numel == q.offset) {
    p->numel += q.numel;
    return true;
  }
  const int64_t w = RunLength(*p);
  if (RunLength(q) != w) return false;
  // The stride the merged piece would have: p's own, or (p one run) the gap to q.
  const int64_t stride = IsStrided(*p) ? p->stride : q.offset - p->offset;
  if (stride <= w || (IsStrided(q) && q.stride != stride)) return false;
  if (q.offset != p->offset + RunCount(*p) * stride) return false;
  p->numel += q.numel;
  p->run = w;
  p->stride = stride;
  return true;
}

}  // namespace

struct CheckpointWriter::Impl {
  HostBuffer staging;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<SaveJob> job;     // set by Save, taken by the thread
  bool busy = false;          // a job is queued or running
  bool stop = false;
  CompletedSave completed;    // of the last finished job
  absl::Status unreported;    // its failure, until Save or Flush surfaces it
  std::thread thread;         // last: starts after everything above exists
};

absl::StatusOr<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Create(
    const CheckpointWriterOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("checkpoint writer: dir is empty");
  if (options.world < 1 || options.rank < 0 || options.rank >= options.world) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint writer: rank ", options.rank,
                                                   " is not in a world of ", options.world));
  }
  if (options.block_bytes <= 0 || options.block_bytes % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint writer: block_bytes must be a positive multiple of 4, got ", options.block_bytes));
  }
  if (options.committer == nullptr) {
    return absl::InvalidArgumentError("checkpoint writer: no committer");
  }
  if (absl::Status s = internal::MakeDirs(options.dir); !s.ok()) return s;
  return std::unique_ptr<CheckpointWriter>(new CheckpointWriter(options));
}

CheckpointWriter::CheckpointWriter(const CheckpointWriterOptions& options)
    : options_(options), impl_(std::make_unique<Impl>()) {
  Impl* impl = impl_.get();
  impl->thread = std::thread([this, impl] {
    std::unique_lock<std::mutex> lock(impl->mu);
    while (true) {
      impl->cv.wait(lock, [impl] { return impl->stop || impl->job.has_value(); });
      if (!impl->job.has_value()) return;  // stop, nothing queued
      SaveJob job = std::move(*impl->job);
      impl->job.reset();
      lock.unlock();
      CompletedSave done = WriteShard(options_, impl->staging.data(), job);
      lock.lock();
      impl->unreported = done.status;
      impl->completed = std::move(done);
      impl->busy = false;
      impl->cv.notify_all();
    }
  });
}

CheckpointWriter::~CheckpointWriter() {
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    impl_->cv.wait(lock, [this] { return !impl_->busy; });
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

absl::Status CheckpointWriter::Reserve(int64_t bytes) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  // The thread reads the staging buffer while a save is in flight.
  impl_->cv.wait(lock, [this] { return !impl_->busy; });
  return impl_->staging.Ensure(bytes);
}

absl::StatusOr<SaveResult> CheckpointWriter::Save(const SaveRequest& request) {
  const StepMeta& meta = request.meta;
  // Validate before waiting: a refused request must not consume the previous outcome.
  std::vector<SourcePiece> pieces = request.pieces;
  std::sort(pieces.begin(), pieces.end(), [](const SourcePiece& a, const SourcePiece& b) {
    return std::make_pair(a.ref.vector, a.ref.offset) < std::make_pair(b.ref.vector, b.ref.offset);
  });
  for (size_t i = 0; i < pieces.size(); ++i) {
    pieces[i].ref = Normalized(pieces[i].ref);
    const PieceRef& p = pieces[i].ref;
    if (const std::string bad = WellFormed(p); !bad.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint step ", meta.step, ": piece ",
                                                     StateVectorName(p.vector), " at ", p.offset,
                                                     ": ", bad));
    }
    if (SpanEnd(p) > meta.numel || (p.numel > 0 && pieces[i].data == nullptr)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint step ", meta.step, ": piece ", StateVectorName(p.vector), " [", p.offset,
          ", ", SpanEnd(p), ") is outside [0, ", meta.numel, ") or has no data"));
    }
    // Spans, not elements: strided pieces that interleave are refused too (no caller
    // needs them, and the check stays one comparison).
    if (i > 0 && pieces[i - 1].ref.vector == p.vector && SpanEnd(pieces[i - 1].ref) > p.offset) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint step ", meta.step, ": pieces of ",
                                                     StateVectorName(p.vector), " overlap at ",
                                                     p.offset));
    }
  }
  if (meta.tp < 1 || options_.world % meta.tp != 0) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint step ", meta.step,
                                                   ": tensor-parallel size ", meta.tp,
                                                   " does not divide the ", options_.world,
                                                   " writing ranks"));
  }
  const std::string step_dir = StepDir(options_.dir, meta.step);
  if (internal::Exists(absl::StrCat(step_dir, "/", kCommitFileName))) {
    return absl::FailedPreconditionError(absl::StrCat(
        step_dir, " is already committed; a resumed run must DiscardStepsAfter its resume step"));
  }

  SaveResult result;
  const Clock::time_point wait_start = Clock::now();
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait(lock, [this] { return !impl_->busy; });
  result.wait_seconds = Seconds(wait_start);
  // The buffer is ours until the job is queued: the thread is idle.
  const Clock::time_point copy_start = Clock::now();
  SaveJob job;
  std::vector<StagedCopy> copies;
  for (const SourcePiece& p : pieces) {
    if (p.ref.numel == 0) continue;
    copies.push_back({p.data, job.data_bytes, p.ref.numel * 4});
    job.data_bytes += p.ref.numel * 4;
    // Pieces that continue each other logically are one piece in the file.
    if (job.pieces.empty() || !TryAppend(&job.pieces.back(), p.ref)) job.pieces.push_back(p.ref);
  }
  if (absl::Status s = impl_->staging.Ensure(job.data_bytes); !s.ok()) return s;
  char* staging = impl_->staging.data();
  if (request.backend == nullptr || request.backend->kind() == kernels::DeviceKind::kCPU) {
    ParallelCopy(staging, copies, job.data_bytes, options_.copy_threads);
  } else {
    for (const StagedCopy& c : copies) {
      request.backend->CopyToHost(staging + c.staged, c.src, static_cast<size_t>(c.bytes));
    }
  }
  result.copy_seconds = Seconds(copy_start);
  result.bytes = job.data_bytes;
  result.previous = std::exchange(impl_->unreported, absl::OkStatus());

  job.meta = meta;
  // The writing ranks are the world; dp is what tp leaves of it.
  job.meta.dp = options_.world / meta.tp;
  job.rng = request.rng;
  job.step_dir = step_dir;
  impl_->job = std::move(job);
  impl_->busy = true;
  lock.unlock();
  impl_->cv.notify_all();
  return result;
}

absl::Status CheckpointWriter::Flush() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait(lock, [this] { return !impl_->busy; });
  return std::exchange(impl_->unreported, absl::OkStatus());
}

CompletedSave CheckpointWriter::last_completed() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->completed;
}

namespace {

// Checksums, writes, renames and reports one shard: the background half of a save.
CompletedSave WriteShard(const CheckpointWriterOptions& options, const char* data,
                         const SaveJob& job) {
  const Clock::time_point start = Clock::now();
  CompletedSave done;
  done.step = job.meta.step;
  const std::string file = ShardFileName(options.rank, options.world);
  done.path = absl::StrCat(job.step_dir, "/", file);

  ShardHeader header;
  header.step = job.meta.step;
  header.rank = options.rank;
  header.num_shards = options.world;
  header.numel = job.meta.numel;
  header.data_position = job.meta.data_position;
  header.pieces = job.pieces;
  header.block_bytes = options.block_bytes;
  header.rng = job.rng;
  for (int64_t at = 0; at < job.data_bytes; at += options.block_bytes) {
    header.blocks.push_back(
        XXH64(data + at, static_cast<size_t>(std::min(options.block_bytes, job.data_bytes - at)), 0));
  }
  const std::string prefix = EncodeShardPrefix(header);
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> state(XXH64_createState(),
                                                                   &XXH64_freeState);
  CHECK(state != nullptr) << "XXH64_createState: out of memory";
  CHECK(XXH64_reset(state.get(), 0) == XXH_OK);
  CHECK(XXH64_update(state.get(), prefix.data(), prefix.size()) == XXH_OK);
  if (job.data_bytes > 0) {
    CHECK(XXH64_update(state.get(), data, static_cast<size_t>(job.data_bytes)) == XXH_OK);
  }

  absl::Status s = internal::MakeDirs(job.step_dir);
  if (s.ok()) {
    s = colossus::internal::WriteFileAtomically(
        done.path, {{prefix.data(), prefix.size()}, {data, static_cast<size_t>(job.data_bytes)}});
  }
  if (!s.ok()) {
    options.committer->Abandon(job.step_dir, job.meta.step, options.rank, s);
    done.status = s;
    done.write_seconds = Seconds(start);
    return done;
  }
  ShardReport report;
  report.meta = job.meta;
  report.shard.rank = options.rank;
  report.shard.num_shards = options.world;
  report.shard.file = file;
  report.shard.bytes = static_cast<int64_t>(prefix.size()) + job.data_bytes;
  report.shard.xxh64 = XXH64_digest(state.get());
  report.shard.pieces = job.pieces;
  absl::StatusOr<bool> committed = options.committer->Report(job.step_dir, report);
  done.status = committed.status();
  done.committed = committed.ok() && *committed;
  done.write_seconds = Seconds(start);
  return done;
}

}  // namespace
}  // namespace colossus::checkpoint
