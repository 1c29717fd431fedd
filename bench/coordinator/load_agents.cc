// LoadAgents: channels and queues, (a) the rendezvous and (b) the NCCL-id wait.
#include <sys/resource.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "colossus/launcher/coordinator_client.h"
#include "grpcpp/grpcpp.h"
#include "load_internal.h"

namespace colossus::bench {

std::string NodeId(int agent) { return absl::StrFormat("node-%07d", agent); }

namespace {

void SetHeader(v1::RequestHeader* header, const std::string& job, int64_t generation) {
  header->set_job_id(job);
  header->set_generation(generation);
}

bool IsIpv4Literal(const std::string& host_port) {
  const std::string host = host_port.substr(0, host_port.rfind(':'));
  return !host.empty() && host.find_first_not_of("0123456789.") == std::string::npos;
}

std::string Describe(const grpc::Status& s) {
  return absl::StrCat(static_cast<int>(s.error_code()), " ", s.error_message());
}

}  // namespace

LoadAgents::LoadAgents(const LoadOptions& options) : options_(options), stubs_(new StubSet) {}

absl::StatusOr<std::unique_ptr<LoadAgents>> LoadAgents::Create(const LoadOptions& options) {
  std::unique_ptr<LoadAgents> load(new LoadAgents(options));
  // Each connection is a descriptor; keep headroom for gRPC's own (epoll, wakeups)
  // and for files.
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  const int fd_budget = static_cast<int>(std::min<rlim_t>(lim.rlim_cur, 1 << 30)) - 512;
  const int connections =
      std::max(1, std::min({options.agents, options.max_connections, fd_budget}));
  for (int c = 0; c < connections; ++c) {
    launcher::CoordinatorChannelOptions co;
    // An IPv4 literal needs no resolver: "ipv4:" skips the DNS resolver gRPC would
    // otherwise run per channel (12,500 resolutions are the load's cost, not the
    // coordinator's; a real agent resolves its coordinator once).
    co.target = IsIpv4Literal(options.target) ? "ipv4:" + options.target : options.target;
    co.own_connection = true;
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = launcher::MakeCoordinatorChannel(co);
    if (!channel.ok()) return channel.status();
    load->stubs_->stubs.push_back(v1::Coordinator::NewStub(*channel));
    load->channels_.push_back(*std::move(channel));
  }
  for (int q = 0; q < std::max(1, options.cq_threads); ++q) {
    load->queues_.push_back(std::make_unique<grpc::CompletionQueue>());
    grpc::CompletionQueue* cq = load->queues_.back().get();
    load->threads_.emplace_back([cq] {
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) static_cast<Op*>(tag)->Done(ok);
    });
  }
  return load;
}

LoadAgents::~LoadAgents() {
  for (auto& q : queues_) q->Shutdown();
  for (auto& t : threads_) t.join();
}

grpc::CompletionQueue* LoadAgents::QueueOf(int agent) const {
  return queues_[static_cast<size_t>(agent) % queues_.size()].get();
}

absl::Duration LoadAgents::WaitQuiet(absl::Duration limit) {
  const absl::Time start = absl::Now();
  absl::StatusOr<ProcSample> c0 = SampleProcess(options_.coordinator_pid);
  absl::StatusOr<ProcSample> l0 = SampleProcess(0);
  while (absl::Now() - start < limit) {
    absl::SleepFor(absl::Milliseconds(300));
    absl::StatusOr<ProcSample> c1 = SampleProcess(options_.coordinator_pid);
    absl::StatusOr<ProcSample> l1 = SampleProcess(0);
    if (!c0.ok() || !c1.ok() || !l0.ok() || !l1.ok()) break;
    if (CoresBetween(*c0, *c1) < 0.05 && CoresBetween(*l0, *l1) < 0.05) break;
    c0 = c1;
    l0 = l1;
  }
  return absl::Now() - start;
}

// ---- (a) rendezvous ---------------------------------------------------------------------

namespace {

struct JoinOp final : LoadAgents::Op {
  Latch* latch = nullptr;
  grpc::ClientContext context;
  v1::JoinRequest request;
  v1::JoinResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::JoinResponse>> reader;
  void Done(bool) override { latch->Arrive(); }
};

}  // namespace

RendezvousFigures LoadAgents::Rendezvous() {
  const int n = options_.agents;
  RendezvousFigures fig;
  Latch latch;
  std::vector<std::unique_ptr<JoinOp>> ops(n);
  for (int i = 0; i < n; ++i) {
    auto op = std::make_unique<JoinOp>();
    op->latch = &latch;
    SetHeader(op->request.mutable_header(), options_.job_id, 0);
    op->request.set_node_id(NodeId(i));
    op->request.set_address(absl::StrCat("10.", (i >> 16) & 255, ".", (i >> 8) & 255, ".", i & 255));
    op->request.set_local_world_size(options_.ranks_per_agent);
    op->request.set_incarnation(absl::StrCat("load-", getpid(), "-", i));
    op->request.set_timeout_ms(300000);
    op->context.AddMetadata("x-colossus-token", options_.token);
    if (options_.held_call_deadlines) {
      op->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(330));
    }
    ops[i] = std::move(op);
  }
  // A shuffled order, so that the coordinator's node order cannot come from arrival.
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(12345));

  const int64_t first = NowNs();
  for (int i : order) {
    JoinOp* op = ops[i].get();
    auto& stub = stubs_->stubs[static_cast<size_t>(i) % stubs_->stubs.size()];
    op->reader = stub->PrepareAsyncJoin(&op->context, op->request, QueueOf(i));
    op->reader->StartCall();
    op->reader->Finish(&op->response, &op->status, op);
  }
  const int64_t last_sent = NowNs();
  if (options_.progress) options_.progress("(a) all joins sent");
  if (!latch.WaitFor(n, std::chrono::seconds(340))) {
    // Unanswered calls must complete (cancelled) before their ops are freed.
    for (auto& op : ops) op->context.TryCancel();
    latch.WaitFor(n, std::chrono::hours(1));
  }
  fig.issue_s = Seconds(last_sent - first);
  fig.all_answered_s = Seconds(latch.last_ns() - first);
  fig.tail_s = Seconds(latch.last_ns() - last_sent);
  if (absl::StatusOr<ProcSample> s = SampleProcess(options_.coordinator_pid); s.ok()) {
    fig.coordinator_after = *s;
  }

  // Expected: node i is the i-th in node_id order, ranks R*i .. R*i+R-1.
  const int r = options_.ranks_per_agent;
  fig.assignments_ok = true;
  for (int i = 0; i < n; ++i) {
    const JoinOp& op = *ops[i];
    if (!op.status.ok()) {
      ++fig.failed;
      if (fig.first_error.empty()) fig.first_error = absl::StrCat(NodeId(i), ": ", Describe(op.status));
      fig.assignments_ok = false;
      continue;
    }
    ++fig.ok;
    const v1::JoinResponse& resp = op.response;
    if (i == 0) fig.generation = resp.generation();
    const v1::NodeAssignment& a = resp.assignment();
    const bool right = resp.generation() == fig.generation && a.node_id() == NodeId(i) &&
                       a.node_rank() == i && a.first_rank() == r * i &&
                       a.local_world_size() == r && resp.num_nodes() == n &&
                       resp.world_size() == r * n;
    if (!right && fig.assignments_ok) {
      fig.assignments_ok = false;
      fig.assignment_error = absl::StrCat(
          NodeId(i), ": generation ", resp.generation(), " node ", a.node_id(), " node_rank ",
          a.node_rank(), " first_rank ", a.first_rank(), " local ", a.local_world_size(),
          " nodes ", resp.num_nodes(), " world ", resp.world_size(), " (want node_rank ", i,
          " first_rank ", r * i, ")");
    }
  }
  generation_ = fig.generation;
  return fig;
}

// ---- (b) the NCCL id --------------------------------------------------------------------

namespace {

struct WaitOp final : LoadAgents::Op {
  Latch* latch = nullptr;
  grpc::ClientContext context;
  v1::StoreWaitResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::StoreWaitResponse>> reader;
  void Done(bool) override { latch->Arrive(); }
};

}  // namespace

NcclIdFigures LoadAgents::NcclId() {
  const int n = options_.agents;
  const int waits = n * options_.ranks_per_agent;
  NcclIdFigures fig;
  fig.waits = waits;
  const std::string key = "nccl/unique_id/world";
  // The value: 128 bytes, as an ncclUniqueId.
  std::string value(128, '\0');
  std::mt19937 rng(777);
  for (char& c : value) c = static_cast<char>(rng() & 0xff);

  v1::StoreWaitRequest request;
  SetHeader(request.mutable_header(), options_.job_id, generation_);
  request.set_scope(v1::KEY_SCOPE_GENERATION);
  request.add_keys(key);
  request.set_timeout_ms(300000);

  Latch latch;
  std::vector<std::unique_ptr<WaitOp>> ops(waits);
  const int64_t first = NowNs();
  for (int w = 0; w < waits; ++w) {
    const int agent = w / options_.ranks_per_agent;
    auto op = std::make_unique<WaitOp>();
    op->latch = &latch;
    op->context.AddMetadata("x-colossus-token", options_.token);
    if (options_.held_call_deadlines) {
      op->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(330));
    }
    auto& stub = stubs_->stubs[static_cast<size_t>(agent) % stubs_->stubs.size()];
    op->reader = stub->PrepareAsyncStoreWait(&op->context, request, QueueOf(agent));
    op->reader->StartCall();
    op->reader->Finish(&op->response, &op->status, op.get());
    ops[w] = std::move(op);
  }
  fig.issue_s = Seconds(NowNs() - first);
  // Every wait must be registered at the coordinator before the Set, or the figure
  // would time registration, not release.
  fig.settle_s = absl::ToDoubleSeconds(WaitQuiet(absl::Seconds(120)));

  // One rank (rank 0, over agent 0's channel) publishes the id.
  v1::StoreSetRequest set;
  SetHeader(set.mutable_header(), options_.job_id, generation_);
  set.set_scope(v1::KEY_SCOPE_GENERATION);
  set.set_key(key);
  set.set_value(value);
  grpc::ClientContext set_context;
  set_context.AddMetadata("x-colossus-token", options_.token);
  set_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::StoreSetResponse set_response;
  if (options_.progress) options_.progress("(b) set");
  const int64_t set_at = NowNs();
  const grpc::Status set_status = stubs_->stubs[0]->StoreSet(&set_context, set, &set_response);
  fig.set_rtt_s = Seconds(NowNs() - set_at);
  if (!set_status.ok()) {
    fig.first_error = absl::StrCat("StoreSet: ", Describe(set_status));
  }
  if (!latch.WaitFor(waits, std::chrono::seconds(340))) {
    for (auto& op : ops) op->context.TryCancel();
    latch.WaitFor(waits, std::chrono::hours(1));
  }
  fig.set_to_last_s = Seconds(latch.last_ns() - set_at);
  if (absl::StatusOr<ProcSample> s = SampleProcess(options_.coordinator_pid); s.ok()) {
    fig.coordinator_after = *s;
  }
  fig.values_ok = set_status.ok();
  for (int w = 0; w < waits; ++w) {
    const WaitOp& op = *ops[w];
    if (!op.status.ok()) {
      ++fig.failed;
      fig.values_ok = false;
      if (fig.first_error.empty()) {
        fig.first_error = absl::StrCat("rank ", w, ": ", Describe(op.status));
      }
      continue;
    }
    ++fig.ok;
    if (op.response.values_size() != 1 || op.response.values(0) != value) {
      if (fig.values_ok) fig.first_error = absl::StrCat("rank ", w, ": wrong value");
      fig.values_ok = false;
    }
  }
  return fig;
}

}  // namespace colossus::bench
