// colossus-dp-bench: data-parallel scaling on the CPU. The per-rank training throughput
// of N ranks (one thread each, Gloo, the trainer's DataParallel machinery: bucketed
// all-reduce overlapped with backward, or ZeRO-1) against one process with one thread
// and no communicator, on a model whose compute dominates (the "bench" preset,
// L4 H4 C256 T256, 3.3M parameters, by default).
//
//   colossus-dp-bench [--ranks 2] [--batch 8] [--accum 1] [--steps 6] [--rounds 3]
//                     [--bucket-mb 25] [--zero] [--no-overlap]
//
// Every step is the trainer's: ZeroGrad, --accum micro-batches of forward and backward
// (the last one with the bucket hook), the gradient reduction and AdamW, the global
// loss. The two configurations run one after the other, --rounds times (1 rank, N
// ranks, 1 rank, ...), so that a load change on a shared machine hits both; each
// round times --steps steps after --warmup untimed ones, and the figures are medians
// over rounds. Per-rank throughput is tokens per second of one rank: the N-rank job's
// tokens/s divided by N. Also printed: how long each step's all-reduces took on the
// communication thread, and how much of that the training thread waited for
// (communication not hidden by backward).
//
// Run it on an otherwise idle machine with at least N cores: N ranks with one thread
// each on N cores is the case the ratio describes. On a shared machine, each run also
// measures the CPU that OTHER processes used meanwhile (/proc/stat's busy time minus this
// benchmark's children's, getrusage), printed as "foreign load" in cores; the summary
// gives the ratio over all rounds and over the quiet ones (both runs under 0.1 cores of
// foreign load), which is the figure that describes the code rather than the neighbours.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "colossus/check.h"
#include "colossus/comm/gloo.h"
#include "colossus/comm/tcp_store.h"
#include "colossus/config.h"
#include "colossus/kernels/backend.h"
#include "colossus/model.h"
#include "colossus/optimizer.h"
#include "colossus/parallel/data_parallel.h"
#include "local_ranks.h"

namespace colossus {
namespace {

struct Options {
  std::string preset = "bench";
  int ranks = 2;
  int batch = 8;
  int seq = 0;  // 0: the preset's block_size
  int accum = 1;
  int warmup = 2;
  int steps = 6;
  int rounds = 3;
  double bucket_mb = 25;
  bool zero = false;
  bool no_overlap = false;
};

// What rank 0 of a run reports back through the pipe.
struct Figures {
  double step_s = 0;          // median step time
  double tokens_per_s = 0;    // per rank
  double comm_s = 0;          // median all-reduce time per step (plain DP)
  double wait_s = 0;          // median exposed wait per step (plain DP)
  int buckets = 0;
  double state_mib = 0;       // optimizer state per rank
  double foreign_load = 0;    // cores used by other processes during the run (set by Launch)
};

// Busy CPU seconds of the whole machine so far (/proc/stat: everything but idle and
// iowait).
double MachineBusySeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return (user + nice + system + irq + softirq + steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds used by this process's reaped children so far.
double ChildrenSeconds() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec * 1e-6;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One rank's run; `comm` is null for the single-process baseline.
Figures RunRank(const Options& o, const GPTConfig& config, comm::Communicator* comm) {
  auto backend = kernels::MakeCpuBackend(1);
  const int T = o.seq > 0 ? o.seq : config.block_size;
  const int ranks = comm ? comm->size() : 1;
  parallel::DataParallelOptions dpo;
  dpo.zero = o.zero;
  dpo.bucket_bytes = static_cast<size_t>(o.bucket_mb * (1 << 20));
  dpo.overlap = !o.no_overlap;
  auto model = GPT::Create(config, backend.get(), o.batch, T,
                           comm ? parallel::DataParallel::FlatMultiple(dpo, ranks) : 1);
  CHECK(model.ok()) << model.status();
  GPT& m = **model;
  m.InitWeights(1);
  OptimizerConfig oc;
  oc.lr = 1e-4f;
  std::unique_ptr<AdamW> adamw;
  std::unique_ptr<parallel::DataParallel> dp;
  if (comm) {
    auto d = parallel::DataParallel::Create(comm, &m, oc, dpo);
    CHECK(d.ok()) << d.status();
    dp = *std::move(d);
  } else {
    adamw = *AdamW::Create(oc, &m);
  }
  const int rank = comm ? comm->rank() : 0;
  std::mt19937 rng(1234 + rank);
  std::uniform_int_distribution<int> token(0, config.vocab_size - 1);
  std::vector<int32_t> in(static_cast<size_t>(o.batch) * T), tgt(in.size());

  std::vector<double> step_s, comm_s, wait_s;
  for (int step = 0; step < o.warmup + o.steps; ++step) {
    for (auto& x : in) x = token(rng);
    for (auto& x : tgt) x = token(rng);
    const auto t0 = std::chrono::steady_clock::now();
    m.ZeroGrad();
    double loss = 0;
    for (int micro = 0; micro < o.accum; ++micro) {
      auto l = m.Forward(in.data(), tgt.data(), o.batch, T);
      CHECK(l.ok()) << l.status();
      const GradsReadyFn hook = dp && micro == o.accum - 1 ? dp->BeginLastBackward() : nullptr;
      m.Backward(1.0f / (o.accum * ranks), hook);
      loss += *l / (o.accum * ranks);
    }
    if (dp) {
      auto st = dp->ReduceAndStep(step);
      CHECK(st.ok()) << st.status();
      auto gl = dp->SumOverRanks(static_cast<float>(loss));
      CHECK(gl.ok()) << gl.status();
    } else {
      adamw->Step(step);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (step < o.warmup) continue;
    step_s.push_back(s);
    if (dp && dp->reducer()) {
      comm_s.push_back(dp->reducer()->last_step().comm_seconds);
      wait_s.push_back(dp->reducer()->last_step().wait_seconds);
    }
  }
  Figures f;
  f.step_s = Median(step_s);
  f.tokens_per_s = static_cast<double>(o.batch) * T * o.accum / f.step_s;
  f.comm_s = Median(comm_s);
  f.wait_s = Median(wait_s);
  f.buckets = dp && dp->reducer() ? static_cast<int>(dp->reducer()->buckets().size()) : 0;
  f.state_mib = (dp ? dp->optimizer_state_bytes() : adamw->state_bytes()) / 1048576.0;
  return f;
}

// Runs `ranks` processes (0: the one-process baseline, no communicator) and returns
// rank 0's figures; exits on failure.
Figures Launch(const Options& o, const GPTConfig& config, int ranks) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  const double busy0 = MachineBusySeconds(), ours0 = ChildrenSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = comm::bench::RunLocalRanks(
      "colossus-dp-bench", ranks == 0 ? 1 : ranks, [&](int rank, int port) -> int {
        close(fds[0]);
        Figures f;
        if (ranks == 0) {
          f = RunRank(o, config, nullptr);
        } else {
          auto store = comm::TcpStore::Connect("127.0.0.1", port);
          if (!store.ok()) return 1;
          std::shared_ptr<comm::Store> shared = *std::move(store);
          auto c = comm::CreateGlooCommunicator(shared, rank, ranks);
          if (!c.ok()) {
            std::fprintf(stderr, "rank %d: %s\n", rank, c.status().ToString().c_str());
            return 1;
          }
          f = RunRank(o, config, c->get());
        }
        if (rank == 0 && write(fds[1], &f, sizeof(f)) != sizeof(f)) return 1;
        return 0;
      });
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double foreign =
      std::max(0.0, (MachineBusySeconds() - busy0) - (ChildrenSeconds() - ours0)) / wall;
  close(fds[1]);
  Figures f;
  const bool got = read(fds[0], &f, sizeof(f)) == sizeof(f);
  f.foreign_load = foreign;
  close(fds[0]);
  if (rc != 0 || !got) {
    std::fprintf(stderr, "colossus-dp-bench: the %d-rank run failed\n", ranks);
    std::exit(1);
  }
  return f;
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"Data-parallel scaling on the CPU: N ranks x 1 thread vs 1 process x 1 thread."};
  app.add_option("--preset", o.preset, "model preset (default bench: L4 H4 C256 T256)");
  app.add_option("--ranks", o.ranks, "data-parallel ranks (processes), one thread each");
  app.add_option("--batch", o.batch, "sequences per micro-batch per rank");
  app.add_option("--seq", o.seq, "tokens per sequence (0: the preset's block size)");
  app.add_option("--accum", o.accum, "micro-batches per step per rank");
  app.add_option("--warmup", o.warmup, "untimed steps per round");
  app.add_option("--steps", o.steps, "timed steps per round");
  app.add_option("--rounds", o.rounds, "alternating rounds of both configurations");
  app.add_option("--bucket-mb", o.bucket_mb, "all-reduce bucket size, MiB");
  app.add_flag("--zero", o.zero, "ZeRO-1 instead of bucketed all-reduce");
  app.add_flag("--no-overlap", o.no_overlap, "all-reduce after backward instead of during it");
  CLI11_PARSE(app, argc, argv);
  auto config = GPTPreset(o.preset);
  if (!config.ok()) {
    std::fprintf(stderr, "colossus-dp-bench: %s\n", config.status().ToString().c_str());
    return 2;
  }
  const int T = o.seq > 0 ? o.seq : config->block_size;
  std::printf("# colossus-dp-bench: model %s, micro-batch %d x %d tokens, %d micro-batch(es) per "
              "rank, %d ranks x 1 thread vs 1 process x 1 thread, %s\n",
              config->DebugString().c_str(), o.batch, T, o.accum, o.ranks,
              o.zero ? "ZeRO-1"
                     : (std::string("buckets of ") + std::to_string(o.bucket_mb).substr(0, 5) +
                        " MiB, " + (o.no_overlap ? "after backward" : "overlapped with backward"))
                           .c_str());
  std::printf("# gradients %.1f MiB per step per rank; %d rounds x %d timed steps (after %d warmup)\n",
              config->NumParameters() * 4 / 1048576.0, o.rounds, o.steps, o.warmup);
  std::fflush(stdout);

  std::vector<double> one_tps, many_tps, one_step, many_step, comm_s, wait_s, ratios;
  std::vector<double> quiet_ratios, quiet_one_tps, quiet_many_tps, quiet_comm_s, quiet_wait_s;
  constexpr double kQuiet = 0.1;  // cores of foreign load
  Figures last_many, last_one;
  for (int round = 0; round < o.rounds; ++round) {
    last_one = Launch(o, *config, 0);
    last_many = Launch(o, *config, o.ranks);
    one_tps.push_back(last_one.tokens_per_s);
    many_tps.push_back(last_many.tokens_per_s);
    one_step.push_back(last_one.step_s);
    many_step.push_back(last_many.step_s);
    comm_s.push_back(last_many.comm_s);
    wait_s.push_back(last_many.wait_s);
    ratios.push_back(last_many.tokens_per_s / last_one.tokens_per_s);
    const bool quiet = last_one.foreign_load < kQuiet && last_many.foreign_load < kQuiet;
    if (quiet) {
      quiet_ratios.push_back(ratios.back());
      quiet_one_tps.push_back(last_one.tokens_per_s);
      quiet_many_tps.push_back(last_many.tokens_per_s);
      quiet_comm_s.push_back(last_many.comm_s);
      quiet_wait_s.push_back(last_many.wait_s);
    }
    std::printf("# round %d: 1 rank %.0f tok/s (%.3f s/step, foreign load %.2f cores), %d ranks "
                "%.0f tok/s per rank (%.3f s/step, foreign load %.2f), ratio %.3f%s\n",
                round + 1, last_one.tokens_per_s, last_one.step_s, last_one.foreign_load, o.ranks,
                last_many.tokens_per_s, last_many.step_s, last_many.foreign_load, ratios.back(),
                quiet ? " (quiet)" : "");
    std::fflush(stdout);
  }
  std::printf("\n%-26s %14s %14s\n", "", "1 rank", std::to_string(o.ranks).append(" ranks").c_str());
  std::printf("%-26s %14.0f %14.0f\n", "tokens/s per rank", Median(one_tps), Median(many_tps));
  std::printf("%-26s %14.3f %14.3f\n", "step time (s)", Median(one_step), Median(many_step));
  std::printf("%-26s %14.0f %14.0f\n", "tokens/s, whole job", Median(one_tps),
              Median(many_tps) * o.ranks);
  std::printf("%-26s %14.1f %14.1f\n", "optimizer state MiB/rank", last_one.state_mib,
              last_many.state_mib);
  if (!o.zero) {
    std::printf("%-26s %14s %14.1f\n", "all-reduce ms/step", "-", Median(comm_s) * 1e3);
    std::printf("%-26s %14s %14.1f\n", "exposed wait ms/step", "-", Median(wait_s) * 1e3);
    std::printf("%-26s %14s %14d\n", "buckets", "-", last_many.buckets);
  }
  std::printf("\nper-rank throughput ratio (%d ranks / 1 rank): %.3f (median of %d rounds; "
              "target >= 0.85)\n",
              o.ranks, Median(ratios), o.rounds);
  if (quiet_ratios.empty()) {
    std::printf("quiet rounds (foreign load < %.1f cores in both runs): none; the machine was "
                "busy, rerun when it is idle\n", kQuiet);
  } else {
    const std::string comm =
        o.zero ? std::string()
               : " (all-reduce " + std::to_string(Median(quiet_comm_s) * 1e3).substr(0, 5) +
                     " ms/step, exposed " + std::to_string(Median(quiet_wait_s) * 1e3).substr(0, 5) +
                     " ms/step)";
    std::printf("quiet rounds (foreign load < %.1f cores in both runs): %zu of %d: 1 rank %.0f "
                "tok/s, %d ranks %.0f tok/s per rank%s, ratio %.3f\n",
                kQuiet, quiet_ratios.size(), o.rounds, Median(quiet_one_tps), o.ranks,
                Median(quiet_many_tps), comm.c_str(), Median(quiet_ratios));
  }
  return 0;
}

}  // namespace
}  // namespace colossus

int main(int argc, char** argv) { return colossus::Main(argc, argv); }
