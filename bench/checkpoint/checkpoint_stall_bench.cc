// colossus-checkpoint-bench: how long the training loop waits for a checkpoint, with the
// asynchronous CheckpointWriter, against the time of a synchronous save of the same
// state, side by side in one run, on the disk under --dir.
//
//   colossus-checkpoint-bench [--numel 90000000] [--dir DIR] [--saves 3]
//                             [--interval 0 (auto)] [--copy-threads 2] [--keep]
//
// The state is the checkpoint's logical state of one rank: params, AdamW m and v, each
// --numel f32 (90M x 3 x 4 bytes = 1.01 GiB by default), saved as one shard (world 1,
// committed through an in-memory store, COMMIT.json and all).
//   sync   Save + Flush: copy into the staging buffer, checksum, write, fsync, rename,
//          commit. What a loop without the background thread would wait for.
//   async  Save only: the copy into the staging buffer (the writer was Reserve()d at
//          start-up, as the trainer does), plus any wait for the previous save. Then the
//          "training" between saves (--interval seconds of sleep; auto = 1.5 x the
//          sync save time, so the background write finishes before the next save, as a
//          sensible checkpoint interval ensures) while the background thread writes.
// Medians over --saves saves each; the state changes between saves (one element per
// page) so no save writes the same bytes as the last. The figures depend on the disk
// and on what else the machine is doing; run it on an idle machine.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "colossus/checkpoint/committer.h"
#include "colossus/checkpoint/reader.h"
#include "colossus/checkpoint/writer.h"
#include "colossus/comm/in_memory_store.h"

namespace colossus::checkpoint {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Options {
  int64_t numel = 90'000'000;
  std::string dir;
  int saves = 3;
  double interval = 0.0;
  int copy_threads = 2;
  bool keep = false;
  bool verbose = false;
};

std::unique_ptr<CheckpointWriter> MakeWriter(const std::string& dir, int copy_threads) {
  StoreCommitterOptions co;
  co.retention.keep_last = 1;  // bounds the disk used: one committed GiB at a time
  CheckpointWriterOptions wo;
  wo.dir = dir;
  wo.copy_threads = copy_threads;
  wo.committer = std::make_shared<StoreShardCommitter>(std::make_shared<comm::InMemoryStore>(), co);
  absl::StatusOr<std::unique_ptr<CheckpointWriter>> w = CheckpointWriter::Create(wo);
  if (!w.ok()) {
    std::fprintf(stderr, "%s\n", std::string(w.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(w);
}

int Run(const Options& o) {
  namespace fs = std::filesystem;
  const std::string dir = o.dir.empty() ? (fs::current_path() / "checkpoint-bench").string() : o.dir;
  std::vector<std::vector<float>> state(kNumStateVectors, std::vector<float>(o.numel));
  for (int i = 0; i < kNumStateVectors; ++i) {
    for (int64_t k = 0; k < o.numel; ++k) state[i][k] = static_cast<float>(k % 1000003) * 1e-3f + i;
  }
  const FlatLayout layout = FlatLayout::Identity(o.numel);
  auto request = [&](int64_t step) {
    // Touch one element per 4 KiB page: new bytes for this save.
    for (auto& v : state) {
      for (int64_t k = 0; k < o.numel; k += 1024) v[k] += 1.0f;
    }
    SaveRequest req;
    req.meta.step = step;
    req.meta.numel = o.numel;
    req.meta.data_position = step * 512;
    for (int i = 0; i < kNumStateVectors; ++i) {
      std::vector<SourcePiece> p = SplitPieces(layout, static_cast<StateVector>(i), state[i].data(), 0, 1);
      req.pieces.insert(req.pieces.end(), p.begin(), p.end());
    }
    return req;
  };
  const int64_t bytes = o.numel * 4 * kNumStateVectors;
  std::printf("checkpoint stall: state %.3f GiB (3 x %lld f32), one shard, dir %s, %d saves each\n",
              bytes / double(1 << 30), static_cast<long long>(o.numel), dir.c_str(), o.saves);

  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "save failed: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  int64_t step = 0;
  std::vector<double> sync_s, sync_copy_s, sync_write_s, stall_s, wait_s, write_s;
  {
    fs::remove_all(dir);
    std::unique_ptr<CheckpointWriter> w = MakeWriter(dir, o.copy_threads);
    if (absl::Status s = w->Reserve(bytes); !s.ok()) return fail(s);
    for (int i = 0; i < o.saves; ++i) {
      SaveRequest req = request(++step);
      const Clock::time_point t = Clock::now();
      absl::StatusOr<SaveResult> r = w->Save(req);
      if (!r.ok()) return fail(r.status());
      if (absl::Status s = w->Flush(); !s.ok()) return fail(s);
      sync_s.push_back(Since(t));
      sync_copy_s.push_back(r->copy_seconds);
      sync_write_s.push_back(w->last_completed().write_seconds);
    }
  }
  const double sync = Median(sync_s);
  const double interval = o.interval > 0 ? o.interval : 1.5 * sync;
  {
    fs::remove_all(dir);
    std::unique_ptr<CheckpointWriter> w = MakeWriter(dir, o.copy_threads);
    if (absl::Status s = w->Reserve(bytes); !s.ok()) return fail(s);
    for (int i = 0; i < o.saves; ++i) {
      SaveRequest req = request(++step);
      const Clock::time_point t = Clock::now();
      absl::StatusOr<SaveResult> r = w->Save(req);
      const double stall = Since(t);
      if (!r.ok()) return fail(r.status());
      if (!r->previous.ok()) return fail(r->previous);
      stall_s.push_back(stall);
      wait_s.push_back(r->wait_seconds);
      if (o.verbose) {
        std::printf("  async save %d: stall %.3f s (wait %.3f, copy %.3f)\n", i, stall, r->wait_seconds,
                    r->copy_seconds);
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(interval));  // "training"
      if (i > 0 || o.saves == 1) write_s.push_back(w->last_completed().write_seconds);
    }
    if (absl::Status s = w->Flush(); !s.ok()) return fail(s);
    write_s.push_back(w->last_completed().write_seconds);
    absl::StatusOr<CommittedStep> latest = FindLatestCommitted(dir);
    if (!latest.ok() || latest->step != step) return fail(latest.status());
  }
  if (!o.keep) fs::remove_all(dir);

  const double stall = Median(stall_s);
  std::printf("\n%-40s %10s %10s\n", "", "median s", "GB/s");
  std::printf("%-40s %10.3f %10.2f\n", "sync save (loop waits for all)", sync, bytes / sync / 1e9);
  std::printf("%-40s %10.3f\n", "  of which copy to staging", Median(sync_copy_s));
  std::printf("%-40s %10.3f %10.2f\n", "  of which checksum+write+fsync+commit", Median(sync_write_s),
              bytes / Median(sync_write_s) / 1e9);
  std::printf("%-40s %10.3f %10.2f\n", "async stall (loop waits for)", stall, bytes / stall / 1e9);
  std::printf("%-40s %10.3f\n", "  of which waiting for the previous", Median(wait_s));
  std::printf("%-40s %10.3f\n", "async background write", Median(write_s));
  std::printf("%-40s %10.3f\n", "training interval between saves", interval);
  std::printf("\nstall / sync save = %.2f%% (target < 5%%); max stall %.3f s\n", 100.0 * stall / sync,
              *std::max_element(stall_s.begin(), stall_s.end()));
  return 0;
}

}  // namespace
}  // namespace colossus::checkpoint

int main(int argc, char** argv) {
  colossus::checkpoint::Options o;
  CLI::App app{"colossus-checkpoint-bench: async checkpoint stall vs synchronous save"};
  app.add_option("--numel", o.numel, "f32 elements per state vector (3 vectors)");
  app.add_option("--dir", o.dir, "checkpoint directory (default ./checkpoint-bench; emptied)");
  app.add_option("--saves", o.saves, "saves per mode");
  app.add_option("--interval", o.interval, "seconds of 'training' between async saves (0: 1.5 x sync)");
  app.add_option("--copy-threads", o.copy_threads, "threads copying into the staging buffer");
  app.add_flag("--keep", o.keep, "keep the checkpoint directory");
  app.add_flag("-v,--verbose", o.verbose, "print every async save's stall");
  CLI11_PARSE(app, argc, argv);
  return colossus::checkpoint::Run(o);
}
