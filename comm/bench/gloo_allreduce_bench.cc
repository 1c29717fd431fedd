// gloo_allreduce_bench: our all-reduce over Gloo against Gloo's own allreduce called
// directly, on N local processes, f32 sum, in place, over a range of sizes.
//
//   colossus_gloo_allreduce_bench [--nproc 4] [-b 4M] [-e 256M] [--rounds 9] [--block 64M]
//
// Sizes double from -b to -e (bytes, with an optional K, M or G suffix, as nccl-tests).
//
// Both sides run the same ring algorithm on the same processes, so the figure of merit
// is the ratio of times: our watchdog (sequence number, arrival marker), argument
// checks and Status plumbing are the only difference. To keep a noisy, shared machine
// from favouring either side, each size runs `rounds` rounds, and each round times one
// block of ours and one block of Gloo's, alternating which goes first; a block is as many
// iterations as fit in --block bytes (at least 2). Every block starts after a barrier,
// and its time is the slowest rank's. Reported: the median over rounds of the
// per-iteration time, algorithm and bus bandwidth (bus = 2(n-1)/n x bytes / time, as
// nccl-tests), ours/gloo of the medians, and ours/gloo of the fastest rounds (other load
// on the machine only ever adds time, so the minima are the least disturbed figures).
//
// A program that prints figures, not a test.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "colossus/comm/gloo.h"
#include "colossus/comm/prefix_store.h"
#include "colossus/comm/tcp_store.h"
#include "local_ranks.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/transport/tcp/device.h"
#include "gloo_backend/store_adapter.h"

namespace colossus::comm {
namespace {

struct Flags {
  int nproc = 4;
  size_t min_bytes = size_t{4} << 20;
  size_t max_bytes = size_t{256} << 20;
  int rounds = 9;
  size_t block_bytes = size_t{64} << 20;
};

size_t ParseBytes(const char* text) {
  char* end = nullptr;
  size_t v = std::strtoull(text, &end, 10);
  switch (end && *end ? *end : ' ') {
    case 'K': case 'k': v <<= 10; break;
    case 'M': case 'm': v <<= 20; break;
    case 'G': case 'g': v <<= 30; break;
    default: break;
  }
  return v;
}

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (k == "--nproc") f.nproc = static_cast<int>(v);
    else if (k == "-b") f.min_bytes = ParseBytes(argv[i + 1]);
    else if (k == "-e") f.max_bytes = ParseBytes(argv[i + 1]);
    else if (k == "--rounds") f.rounds = static_cast<int>(v);
    else if (k == "--block") f.block_bytes = ParseBytes(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (f.nproc < 2 || f.min_bytes < sizeof(float) || f.max_bytes < f.min_bytes || f.rounds < 1) {
    std::fprintf(stderr, "bad flags\n");
    std::exit(2);
  }
  return f;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::fflush(stderr);
  _exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One rank of the benchmark.
int RunRank(int rank, const Flags& flags, int port) {
  auto client = TcpStore::Connect("127.0.0.1", port);
  if (!client.ok()) Die(client.status().ToString());
  std::shared_ptr<Store> store = *std::move(client);
  const int n = flags.nproc;

  GlooOptions options;
  options.comm.timeout = absl::Minutes(5);
  auto ours_or = CreateGlooCommunicator(std::make_shared<PrefixStore>(store, "ours"), rank, n,
                                        options);
  if (!ours_or.ok()) Die(ours_or.status().ToString());
  Communicator& ours = **ours_or;

  // Gloo's own context, connected through the same store under another prefix.
  gloo::transport::tcp::attr attr;
  attr.hostname = "127.0.0.1";
  auto device = gloo::transport::tcp::CreateDevice(attr);
  auto raw = std::make_shared<gloo::rendezvous::Context>(rank, n);
  raw->setTimeout(std::chrono::minutes(5));
  internal::GlooStoreAdapter adapter(std::make_shared<PrefixStore>(store, "raw"), absl::Minutes(1));
  raw->connectFullMesh(adapter, device);

  uint32_t raw_tag = 0;
  auto raw_allreduce = [&](float* data, size_t count) {
    gloo::AllreduceOptions o(raw);
    o.setOutput<float>(data, count);
    o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    o.setTag(++raw_tag);
    gloo::allreduce(o);
  };
  auto ours_allreduce = [&](float* data, size_t count) {
    absl::Status s = ours.AllReduce(data, data, count, DataType::kF32, ReduceOp::kSum).Wait();
    if (!s.ok()) Die(s.ToString());
  };
  // The slowest rank's time (ns per iteration): a block is over when the last rank is.
  auto slowest = [&](absl::Duration per_iter) {
    int64_t ns = absl::ToInt64Nanoseconds(per_iter);
    absl::Status s = ours.AllReduce(&ns, &ns, 1, DataType::kI64, ReduceOp::kMax).Wait();
    if (!s.ok()) Die(s.ToString());
    return static_cast<double>(ns) * 1e-9;
  };

  if (rank == 0) {
    std::printf("# all-reduce f32 sum in place, %d processes, %d rounds; times: median of rounds\n",
                n, flags.rounds);
    std::printf("%10s %6s | %10s %8s %8s | %10s %8s %8s | %7s %9s\n", "bytes", "iters",
                "ours_ms", "algbw", "busbw", "gloo_ms", "algbw", "busbw", "ratio", "ratio_min");
  }
  for (size_t size = flags.min_bytes; size <= flags.max_bytes; size *= 2) {
    const size_t count = size / sizeof(float);
    const size_t bytes = count * sizeof(float);
    std::vector<float> buf(count);
    for (size_t i = 0; i < count; ++i) buf[i] = static_cast<float>((i * 7 + static_cast<size_t>(rank)) % 13);
    const int iters = static_cast<int>(std::max<size_t>(2, flags.block_bytes / bytes));
    // Warm-up: first touch of the buffers and socket buffers on both paths.
    ours_allreduce(buf.data(), count);
    raw_allreduce(buf.data(), count);

    std::vector<double> t_ours, t_gloo;
    for (int round = 0; round < flags.rounds; ++round) {
      for (int half = 0; half < 2; ++half) {
        const bool ours_now = (round + half) % 2 == 0;
        if (absl::Status s = ours.Barrier().Wait(); !s.ok()) Die(s.ToString());
        const absl::Time start = absl::Now();
        for (int i = 0; i < iters; ++i) {
          if (ours_now) {
            ours_allreduce(buf.data(), count);
          } else {
            raw_allreduce(buf.data(), count);
          }
        }
        const double t = slowest((absl::Now() - start) / iters);
        (ours_now ? t_ours : t_gloo).push_back(t);
      }
    }
    if (rank == 0) {
      const double a = Median(t_ours), b = Median(t_gloo);
      const double bus = 2.0 * (n - 1) / n;
      const double min_ratio = *std::min_element(t_ours.begin(), t_ours.end()) /
                               *std::min_element(t_gloo.begin(), t_gloo.end());
      std::printf("%10zu %6d | %10.2f %8.3f %8.3f | %10.2f %8.3f %8.3f | %7.3f %9.3f\n", bytes,
                  iters, a * 1e3, bytes / a / 1e9, bus * bytes / a / 1e9, b * 1e3,
                  bytes / b / 1e9, bus * bytes / b / 1e9, a / b, min_ratio);
      std::fflush(stdout);
    }
  }
  if (absl::Status s = ours.Barrier().Wait(); !s.ok()) Die(s.ToString());
  return 0;
}

}  // namespace
}  // namespace colossus::comm

int main(int argc, char** argv) {
  using namespace colossus::comm;
  const Flags flags = Parse(argc, argv);
  // The store server and the ranks are processes of their own (local_ranks.h): this
  // process stays single-threaded, so forking cannot copy a lock a thread was holding.
  return bench::RunLocalRanks("colossus_gloo_allreduce_bench", flags.nproc,
                              [&flags](int rank, int port) { return RunRank(rank, flags, port); });
}
