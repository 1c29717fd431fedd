// colossus-bench: collective bandwidth, measured and printed the way nccl-tests does.
//
//   colossus-bench --backend nccl|gloo --op-name all_reduce [--nproc N] [-b 8] [-e 128M]
//                  [-f 2] [-n 20] [-w 5] [-c 1] [-d float] [-o sum] [-z 0] [-r 0]
//                  [--json FILE] [--timeout SECONDS]
//
// Ranks: --nproc N forks N local processes around a TCP store (NCCL ranks take GPU
// local_rank % device count). Without --nproc, the rank comes from the environment a
// launcher sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; rank 0 serves
// the store on MASTER_PORT), else a single process.
//
// Sizes (bytes, K/M/G suffixes) grow from -b to -e by the factor -f. "size" is what
// nccl-tests calls it: the whole buffer (all_gather: the output, reduce_scatter: the
// input, alltoall: each rank's send buffer), rounded down to a multiple of ranks x
// element size. Each size runs -w warm-up and -n timed iterations out of place, then in
// place (alltoall: out of place only); -z 1 waits for each operation before starting
// the next. time = the timed iterations' wall time / n, averaged over ranks (nccl-tests'
// default); algbw = size / time; busbw = algbw x the collective's factor (all_reduce
// 2(n-1)/n; all_gather, reduce_scatter, alltoall (n-1)/n; broadcast 1). -c 1 then runs
// each once more on data computed from rank and index and counts the wrong elements
// over all ranks. The last line is nccl-tests' "# Avg bus bandwidth": the mean busbw
// over every row and placement. --json writes the same figures.
//
// Exit status: 0; 1 if an operation failed or an element was wrong; 2 for bad usage.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_data.h"
#include "local_ranks.h"
#include "colossus/comm/gloo.h"
#include "colossus/comm/in_memory_store.h"
#include "colossus/comm/nccl.h"
#include "colossus/comm/prefix_store.h"
#include "colossus/comm/tcp_store.h"
#include "nlohmann/json.hpp"

namespace colossus::comm::bench {
namespace {

enum class Coll { kAllReduce, kAllGather, kReduceScatter, kBroadcast, kAllToAll };

struct Flags {
  size_t min_bytes = 32 << 20;
  size_t max_bytes = 32 << 20;
  size_t factor = 2;
  int iters = 20;
  int warmup = 5;
  bool check = true;
  bool blocking = false;
  int root = 0;
  DataType dtype = DataType::kF32;
  std::string dtype_name = "float";
  ReduceOp op = ReduceOp::kSum;
  Coll coll = Coll::kAllReduce;
  std::string coll_name = "all_reduce";
  Backend backend = Backend::kNccl;
  int nproc = 0;
  std::string json;
  absl::Duration timeout = absl::Seconds(300);
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr,
               "colossus-bench: %s\n"
               "usage: colossus-bench [--backend nccl|gloo] [--op-name all_reduce|all_gather|"
               "reduce_scatter|broadcast|alltoall]\n"
               "       [--nproc N] [-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP] [-c 0|1]\n"
               "       [-d float|bfloat16|half|int32|int64] [-o sum|avg|max|min] [-z 0|1] [-r ROOT]\n"
               "       [--json FILE] [--timeout SECONDS]\n",
               why.c_str());
  std::exit(2);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "colossus-bench: %s\n", what.c_str());
  std::fflush(stderr);
  std::exit(1);
}

size_t ParseBytes(const std::string& text) {
  size_t mult = 1;
  std::string digits = text;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K': case 'k': mult = size_t{1} << 10; break;
      case 'M': case 'm': mult = size_t{1} << 20; break;
      case 'G': case 'g': mult = size_t{1} << 30; break;
      default: break;
    }
    if (mult != 1) digits.pop_back();
  }
  uint64_t v = 0;
  if (!absl::SimpleAtoi(digits, &v)) Usage(absl::StrCat("not a byte count: '", text, "'"));
  return static_cast<size_t>(v) * mult;
}

int ParseInt(const std::string& text, const char* flag) {
  int v = 0;
  if (!absl::SimpleAtoi(text, &v)) Usage(absl::StrCat(flag, ": not an integer: '", text, "'"));
  return v;
}

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) Usage(absl::StrCat(k, " needs a value"));
    const std::string v = argv[++i];
    if (k == "-b" || k == "--minbytes") f.min_bytes = ParseBytes(v);
    else if (k == "-e" || k == "--maxbytes") f.max_bytes = ParseBytes(v);
    else if (k == "-f" || k == "--stepfactor") f.factor = static_cast<size_t>(ParseInt(v, "-f"));
    else if (k == "-n" || k == "--iters") f.iters = ParseInt(v, "-n");
    else if (k == "-w" || k == "--warmup_iters") f.warmup = ParseInt(v, "-w");
    else if (k == "-c" || k == "--check") f.check = ParseInt(v, "-c") != 0;
    else if (k == "-z" || k == "--blocking") f.blocking = ParseInt(v, "-z") != 0;
    else if (k == "-r" || k == "--root") f.root = ParseInt(v, "-r");
    else if (k == "--nproc") f.nproc = ParseInt(v, "--nproc");
    else if (k == "--json") f.json = v;
    else if (k == "--timeout") f.timeout = absl::Seconds(ParseInt(v, "--timeout"));
    else if (k == "-d" || k == "--datatype") {
      f.dtype_name = v;
      if (v == "float" || v == "f32") f.dtype = DataType::kF32, f.dtype_name = "float";
      else if (v == "bfloat16" || v == "bf16") f.dtype = DataType::kBF16, f.dtype_name = "bfloat16";
      else if (v == "half" || v == "f16") f.dtype = DataType::kF16, f.dtype_name = "half";
      else if (v == "int32" || v == "int") f.dtype = DataType::kI32, f.dtype_name = "int32";
      else if (v == "int64") f.dtype = DataType::kI64;
      else Usage(absl::StrCat("-d: unknown dtype '", v, "'"));
    } else if (k == "-o" || k == "--op") {
      if (v == "sum") f.op = ReduceOp::kSum;
      else if (v == "avg") f.op = ReduceOp::kAvg;
      else if (v == "max") f.op = ReduceOp::kMax;
      else if (v == "min") f.op = ReduceOp::kMin;
      else Usage(absl::StrCat("-o: unknown op '", v, "' (sum, avg, max, min)"));
    } else if (k == "--op-name") {
      f.coll_name = v;
      if (v == "all_reduce") f.coll = Coll::kAllReduce;
      else if (v == "all_gather") f.coll = Coll::kAllGather;
      else if (v == "reduce_scatter") f.coll = Coll::kReduceScatter;
      else if (v == "broadcast") f.coll = Coll::kBroadcast;
      else if (v == "alltoall") f.coll = Coll::kAllToAll;
      else Usage(absl::StrCat("--op-name: unknown collective '", v, "'"));
    } else if (k == "--backend") {
      if (v == "nccl") f.backend = Backend::kNccl;
      else if (v == "gloo") f.backend = Backend::kGloo;
      else Usage(absl::StrCat("--backend: '", v, "' is neither nccl nor gloo"));
    } else {
      Usage(absl::StrCat("unknown flag '", k, "'"));
    }
  }
  if (f.min_bytes > f.max_bytes) Usage("-b is larger than -e");
  if (f.factor < 2) Usage("-f must be at least 2");
  if (f.iters < 1 || f.warmup < 0) Usage("-n must be at least 1 and -w at least 0");
  if (f.nproc < 0) Usage("--nproc must be positive");
  if (f.timeout <= absl::ZeroDuration()) Usage("--timeout must be positive");
  return f;
}

// Buffers in host memory (Gloo) or device memory (NCCL), and the copies between.
class Memory {
 public:
  explicit Memory(bool device) : device_(device) {}
  void* Alloc(size_t bytes) {
    void* p = nullptr;
    bytes = std::max<size_t>(bytes, 64);
    if (device_) {
      Check(cudaMalloc(&p, bytes), "cudaMalloc");
    } else {
      p = std::malloc(bytes);
      if (p == nullptr) Die(absl::StrCat("out of host memory for ", bytes, " bytes"));
    }
    return p;
  }
  void Free(void* p) {
    if (device_) (void)cudaFree(p); else std::free(p);
  }
  void Upload(void* dst, const void* src, size_t n) {
    if (n == 0) return;
    if (device_) {
      Check(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "cudaMemcpy");
      // From pageable memory cudaMemcpy may return before the DMA lands, and the
      // communicator's stream does not wait for the legacy default stream.
      Check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    } else {
      std::memcpy(dst, src, n);
    }
  }
  void Download(void* dst, const void* src, size_t n) {
    if (n == 0) return;
    if (device_) Check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "cudaMemcpy"); else std::memcpy(dst, src, n);
  }

 private:
  static void Check(cudaError_t e, const char* call) {
    if (e != cudaSuccess) Die(absl::StrCat(call, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
  }
  const bool device_;
};

double BusFactor(Coll c, int n) {
  switch (c) {
    case Coll::kAllReduce: return 2.0 * (n - 1) / n;
    case Coll::kAllGather:
    case Coll::kReduceScatter:
    case Coll::kAllToAll: return static_cast<double>(n - 1) / n;
    case Coll::kBroadcast: return 1.0;
  }
  return 1.0;
}

bool Reduces(Coll c) { return c == Coll::kAllReduce || c == Coll::kReduceScatter; }

// Element counts of one size (see the header comment for what "size" means).
struct Shape {
  size_t count = 0;  // printed: size / element size
  size_t param = 0;  // the count passed to the call
  size_t send = 0;   // elements in the send buffer
  size_t recv = 0;   // elements in the recv buffer
};

Shape ShapeOf(Coll c, size_t bytes, size_t es, int n) {
  const size_t un = static_cast<size_t>(n);
  Shape s;
  switch (c) {
    case Coll::kAllReduce:
    case Coll::kBroadcast:
      s.count = s.param = s.send = s.recv = bytes / es;
      break;
    case Coll::kAllGather:
      s.param = bytes / es / un;
      s.count = s.recv = s.param * un;
      s.send = s.param;
      break;
    case Coll::kReduceScatter:
      s.param = bytes / es / un;
      s.count = s.send = s.param * un;
      s.recv = s.param;
      break;
    case Coll::kAllToAll:
      s.param = bytes / es / un;
      s.count = s.send = s.recv = s.param * un;
      break;
  }
  return s;
}

struct Result {
  bool ran = false;
  double time_us = 0;
  double algbw = 0;
  double busbw = 0;
  int64_t wrong = 0;
};

class Runner {
 public:
  Runner(const Flags& f, Communicator& comm, std::shared_ptr<Store> results, Memory& mem)
      : f_(f), comm_(comm), results_(std::move(results)), mem_(mem),
        es_(DataTypeSize(f.dtype)), n_(comm.size()), me_(comm.rank()) {
    const Shape max = ShapeOf(f.coll, f.max_bytes, es_, n_);
    send_ = mem_.Alloc(max.send * es_);
    recv_ = mem_.Alloc(max.recv * es_);
  }
  ~Runner() {
    mem_.Free(send_);
    mem_.Free(recv_);
  }

  // Runs one placement of one size; every rank returns the group's figures.
  Result Run(const Shape& s, bool in_place) {
    Result r;
    r.ran = true;
    Sync();
    for (int i = 0; i < f_.warmup; ++i) Issue(s, in_place, /*wait=*/f_.blocking || i + 1 == f_.warmup);
    Sync();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < f_.iters; ++i) Issue(s, in_place, f_.blocking || i + 1 == f_.iters);
    const double local_us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
        f_.iters;
    int64_t wrong = f_.check ? Check(s, in_place) : 0;
    // Average time and total wrong elements over ranks, through the store.
    const std::string key = absl::StrCat(++round_);
    if (absl::Status st = results_->Set(absl::StrCat(key, "/", me_), absl::StrFormat("%.17g %d", local_us, wrong));
        !st.ok()) {
      Die(st.ToString());
    }
    double sum_us = 0;
    wrong = 0;
    for (int q = 0; q < n_; ++q) {
      absl::StatusOr<std::string> v = results_->WaitGet(absl::StrCat(key, "/", q), f_.timeout);
      if (!v.ok()) Die(v.status().ToString());
      double t = 0;
      long long w = 0;
      if (std::sscanf(v->c_str(), "%lf %lld", &t, &w) != 2) Die("bad result record");
      sum_us += t;
      wrong += w;
    }
    r.time_us = sum_us / n_;
    const double bytes = static_cast<double>(s.count * es_);
    r.algbw = r.time_us > 0 ? bytes / (r.time_us * 1e3) : 0;  // bytes/us/1e3 = GB/s
    r.busbw = r.algbw * BusFactor(f_.coll, n_);
    r.wrong = wrong;
    return r;
  }

 private:
  void Sync() {
    if (absl::Status st = comm_.Barrier().Wait(); !st.ok()) Die(st.ToString());
  }

  void* SendPtr(const Shape& s, bool in_place) const {
    if (!in_place) return send_;
    switch (f_.coll) {
      case Coll::kAllGather: return static_cast<char*>(recv_) + static_cast<size_t>(me_) * s.param * es_;
      default: return recv_;
    }
  }
  // Where the result lands (reduce_scatter in place: this rank's block of the input).
  void* RecvPtr(const Shape& s, bool in_place) const {
    if (in_place && f_.coll == Coll::kReduceScatter) {
      return static_cast<char*>(send_) + static_cast<size_t>(me_) * s.param * es_;
    }
    return recv_;
  }

  void Issue(const Shape& s, bool in_place, bool wait) {
    const void* in = SendPtr(s, in_place);
    void* out = RecvPtr(s, in_place);
    if (in_place && f_.coll == Coll::kReduceScatter) in = send_;
    Work w = [&] {
      switch (f_.coll) {
        case Coll::kAllReduce: return comm_.AllReduce(in, out, s.param, f_.dtype, f_.op);
        case Coll::kAllGather: return comm_.AllGather(in, out, s.param, f_.dtype);
        case Coll::kReduceScatter: return comm_.ReduceScatter(in, out, s.param, f_.dtype, f_.op);
        case Coll::kBroadcast: return comm_.Broadcast(in, out, s.param, f_.dtype, f_.root);
        case Coll::kAllToAll: return comm_.AllToAll(in, out, s.param, f_.dtype);
      }
      return Work::Completed(absl::InternalError("unknown collective"));
    }();
    // Non-blocking: NCCL's operations are ordered on the communicator's stream, so
    // waiting for the last one covers all; a failed enqueue is reported at once.
    if (wait || w.Done()) {
      if (absl::Status st = w.Wait(); !st.ok()) Die(st.ToString());
    }
  }

  // Fills the inputs from (rank, index), runs once, and counts wrong output elements.
  int64_t Check(const Shape& s, bool in_place) {
    const size_t p = s.param;
    std::vector<char> host(std::max(s.send, s.recv) * es_ + 1);
    auto fill = [&](void* dst, size_t count, size_t offset) {
      for (size_t i = 0; i < count; ++i) StoreValue(f_.dtype, host.data(), i, Value(f_.dtype, me_, offset + i));
      mem_.Upload(dst, host.data(), count * es_);
    };
    // Poison the output so that an operation that writes nothing is caught.
    std::vector<char> poison(s.recv * es_, static_cast<char>(0xA5));
    mem_.Upload(recv_, poison.data(), poison.size());
    if (!in_place) {
      fill(send_, s.send, 0);
    } else {
      switch (f_.coll) {
        case Coll::kAllGather: fill(SendPtr(s, true), p, 0); break;
        case Coll::kReduceScatter: fill(send_, s.send, 0); break;
        default: fill(recv_, s.send, 0); break;
      }
    }
    Issue(s, in_place, /*wait=*/true);
    const size_t out_count = s.recv;
    std::vector<char> out(out_count * es_ + 1);
    mem_.Download(out.data(), RecvPtr(s, in_place), out_count * es_);
    int64_t wrong = 0;
    for (size_t i = 0; i < out_count; ++i) {
      double want = 0;
      switch (f_.coll) {
        case Coll::kAllReduce: want = Reduced(f_.dtype, f_.op, n_, i); break;
        case Coll::kBroadcast: want = Value(f_.dtype, f_.root, i); break;
        case Coll::kReduceScatter: want = Reduced(f_.dtype, f_.op, n_, static_cast<size_t>(me_) * p + i); break;
        case Coll::kAllGather: want = Value(f_.dtype, static_cast<int>(i / p), i % p); break;
        case Coll::kAllToAll: want = Value(f_.dtype, static_cast<int>(i / p), static_cast<size_t>(me_) * p + i % p); break;
      }
      if (!Matches(f_.dtype, f_.op, LoadValue(f_.dtype, out.data(), i), want)) ++wrong;
    }
    return wrong;
  }

  const Flags& f_;
  Communicator& comm_;
  const std::shared_ptr<Store> results_;
  Memory& mem_;
  const size_t es_;
  const int n_;
  const int me_;
  void* send_ = nullptr;
  void* recv_ = nullptr;
  uint64_t round_ = 0;
};

std::string Cell(const Result& r, bool check) {
  if (!r.ran) return absl::StrFormat("  %7s  %6s  %6s  %6s", "N/A", "N/A", "N/A", "N/A");
  return absl::StrFormat("  %7.2f  %6.2f  %6.2f  %6s", r.time_us, r.algbw, r.busbw,
                         check ? absl::StrCat(r.wrong) : std::string("N/A"));
}

nlohmann::json CellJson(const Result& r) {
  if (!r.ran) return nullptr;
  return {{"time_us", r.time_us}, {"algbw_gbps", r.algbw}, {"busbw_gbps", r.busbw},
          {"wrong", r.wrong}};
}

int RunRank(const Flags& f, std::shared_ptr<Store> store, int rank, int size, int local_rank) {
  std::unique_ptr<Communicator> comm;
  const bool gpu = f.backend == Backend::kNccl;
  int device = -1;
  if (gpu) {
    absl::StatusOr<int> devices = NcclDeviceCount();
    if (!devices.ok()) Die(absl::StrCat("--backend nccl: ", devices.status().ToString()));
    device = local_rank % *devices;
    if (cudaSetDevice(device) != cudaSuccess) Die("cudaSetDevice failed");
    NcclOptions o;
    o.device = device;
    o.comm.timeout = f.timeout;
    o.comm.init_timeout = f.timeout;
    absl::StatusOr<std::unique_ptr<Communicator>> c =
        CreateNcclCommunicator(std::make_shared<PrefixStore>(store, "comm"), rank, size, o);
    if (!c.ok()) Die(c.status().ToString());
    comm = std::move(*c);
  } else {
    GlooOptions o;
    o.comm.timeout = f.timeout;
    o.comm.init_timeout = f.timeout;
    absl::StatusOr<std::unique_ptr<Communicator>> c =
        CreateGlooCommunicator(std::make_shared<PrefixStore>(store, "comm"), rank, size, o);
    if (!c.ok()) Die(c.status().ToString());
    comm = std::move(*c);
  }
  if (f.root < 0 || f.root >= size) Usage(absl::StrCat("-r ", f.root, " is not a rank of ", size));
  Memory mem(gpu);
  Runner runner(f, *comm, std::make_shared<PrefixStore>(store, "bench"), mem);
  const bool print = rank == 0;
  const size_t es = DataTypeSize(f.dtype);
  const char* redop = Reduces(f.coll) ? ReduceOpName(f.op) : "none";
  const int root = f.coll == Coll::kBroadcast ? f.root : -1;
  if (print) {
    std::printf("# colossus-bench %s: backend %s, %d ranks, %s, -b %zu -e %zu -f %zu -n %d -w %d -c %d -z %d\n",
                f.coll_name.c_str(), BackendName(f.backend), size, f.dtype_name.c_str(),
                f.min_bytes, f.max_bytes, f.factor, f.iters, f.warmup, f.check ? 1 : 0,
                f.blocking ? 1 : 0);
    std::printf("#\n# %10s  %12s  %8s  %6s  %6s  %31s  %31s\n", "", "", "", "", "",
                "out-of-place", "in-place");
    std::printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s\n", "size",
                "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time",
                "algbw", "busbw", "#wrong");
    std::printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s\n", "(B)",
                "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)",
                "(GB/s)", "");
    std::fflush(stdout);
  }
  nlohmann::json rows = nlohmann::json::array();
  double bw_sum = 0;
  int bw_n = 0;
  int64_t wrong_total = 0;
  // After size 0 the sweep continues at one element (0 x factor would stay 0).
  for (size_t bytes = f.min_bytes; bytes <= f.max_bytes;
       bytes = bytes == 0 ? es * static_cast<size_t>(size) : bytes * f.factor) {
    const Shape s = ShapeOf(f.coll, bytes, es, size);
    Result out = runner.Run(s, false);
    Result in;
    if (f.coll != Coll::kAllToAll) in = runner.Run(s, true);  // all-to-all: out of place only
    for (const Result* r : {&out, &in}) {
      if (!r->ran) continue;
      bw_sum += r->busbw;
      ++bw_n;
      wrong_total += r->wrong;
    }
    if (print) {
      std::printf("  %10zu  %12zu  %8s  %6s  %6d%s%s\n", s.count * es, s.count,
                  f.dtype_name.c_str(), redop, root, Cell(out, f.check).c_str(),
                  Cell(in, f.check).c_str());
      std::fflush(stdout);
    }
    rows.push_back({{"size", s.count * es}, {"count", s.count}, {"type", f.dtype_name},
                    {"redop", redop}, {"root", root}, {"out_of_place", CellJson(out)},
                    {"in_place", CellJson(in)}});
  }
  const double avg = bw_n > 0 ? bw_sum / bw_n : 0;
  if (print) {
    if (f.check) std::printf("# Out of bounds values : %lld %s\n", static_cast<long long>(wrong_total), wrong_total ? "FAILED" : "OK");
    std::printf("# Avg bus bandwidth    : %g \n#\n", avg);
    std::fflush(stdout);
    if (!f.json.empty()) {
      nlohmann::json j = {{"op_name", f.coll_name}, {"backend", BackendName(f.backend)},
                          {"nranks", size}, {"dtype", f.dtype_name}, {"redop", redop},
                          {"iters", f.iters}, {"warmup", f.warmup}, {"check", f.check},
                          {"blocking", f.blocking}, {"rows", rows},
                          {"avg_busbw_gbps", avg}, {"wrong_total", wrong_total}};
      std::ofstream out(f.json);
      out << j.dump(2) << "\n";
      if (!out) Die(absl::StrCat("cannot write ", f.json));
    }
  }
  // Leave together: the store (rank 0's, or the parent's) must outlive every reader.
  if (absl::Status st = comm->Barrier().Wait(); !st.ok()) Die(st.ToString());
  return wrong_total == 0 ? 0 : 1;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// --nproc N: a store server process and N rank processes (local_ranks.h).
int RunLocal(const Flags& f) {
  return bench::RunLocalRanks("colossus-bench", f.nproc, [&f](int rank, int port) {
    absl::StatusOr<std::unique_ptr<TcpStore>> store = TcpStore::Connect("127.0.0.1", port);
    if (!store.ok()) Die(store.status().ToString());
    return RunRank(f, std::shared_ptr<Store>(std::move(*store)), rank, f.nproc, rank);
  });
}

// Ranks from a launcher's environment; rank 0 serves the store on MASTER_PORT.
int RunFromEnv(const Flags& f) {
  const std::string rank_s = Env("RANK"), size_s = Env("WORLD_SIZE");
  if (rank_s.empty() || size_s.empty()) {
    return RunRank(f, std::make_shared<InMemoryStore>(), 0, 1, 0);
  }
  const int rank = ParseInt(rank_s, "RANK"), size = ParseInt(size_s, "WORLD_SIZE");
  const int local_rank = Env("LOCAL_RANK").empty() ? rank : ParseInt(Env("LOCAL_RANK"), "LOCAL_RANK");
  const std::string host = Env("MASTER_ADDR").empty() ? "127.0.0.1" : Env("MASTER_ADDR");
  if (Env("MASTER_PORT").empty()) Usage("RANK and WORLD_SIZE are set but MASTER_PORT is not");
  const int port = ParseInt(Env("MASTER_PORT"), "MASTER_PORT");
  std::unique_ptr<TcpStoreServer> server;
  if (rank == 0) {
    absl::StatusOr<std::unique_ptr<TcpStoreServer>> s = TcpStoreServer::Start(host, port);
    if (!s.ok()) Die(s.status().ToString());
    server = std::move(*s);
  }
  absl::StatusOr<std::unique_ptr<TcpStore>> store = TcpStore::Connect(host, port);
  if (!store.ok()) Die(store.status().ToString());
  return RunRank(f, std::shared_ptr<Store>(std::move(*store)), rank, size, local_rank);
}

}  // namespace
}  // namespace colossus::comm::bench

int main(int argc, char** argv) {
  using namespace colossus::comm::bench;
  const Flags flags = Parse(argc, argv);
  return flags.nproc > 0 ? RunLocal(flags) : RunFromEnv(flags);
}
