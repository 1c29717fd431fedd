// LoadAgents: (b, relayed) the NCCL id through node relays.
//
// What is real and what is simulated:
//   - every agent's ONE upstream StoreWait is a real gRPC call over that agent's own
//     connection to the real coordinator (what a relay sends for its 8 ranks);
//   - for `sample` agents spread over the range, that call is made by a real StoreRelay
//     (launcher/agent/store_relay*) serving R real CoordinatorClients (the workers'
//     client, each with its own connection) over its unix socket in this process;
//   - the other agents' R local ranks are not simulated: their hop is the sampled one.
// The local hop is measured per sampled relay from its upstream answer (the relay's
// on_upstream_wait_answered hook) to the last of its R clients returning from StoreWait
// (one steady clock, one process), and again in quiet trials through one relay.
#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "colossus/launcher/coordinator_client.h"
#include "colossus/launcher/store_relay.h"
#include "grpcpp/grpcpp.h"
#include "load_internal.h"

namespace colossus::bench {
namespace {

struct UpstreamWaitOp final : LoadAgents::Op {
  Latch* latch = nullptr;
  std::atomic<int64_t>* done_ns = nullptr;
  grpc::ClientContext context;
  v1::StoreWaitResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::StoreWaitResponse>> reader;
  void Done(bool) override {
    done_ns->store(NowNs());
    latch->Arrive();
  }
};

// One sampled node: its relay and its R ranks' clients.
struct SampledNode {
  int agent = 0;
  std::unique_ptr<launcher::StoreRelay> relay;
  std::vector<std::unique_ptr<launcher::CoordinatorClient>> ranks;
  std::atomic<int64_t> upstream_answered_ns{0};
  std::vector<int64_t> rank_done_ns;
  std::vector<absl::StatusOr<std::vector<std::string>>> rank_values;
};

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

std::string Describe(const grpc::Status& s) {
  return absl::StrCat(static_cast<int>(s.error_code()), " ", s.error_message());
}

}  // namespace

RelayedNcclIdFigures LoadAgents::RelayedNcclId(int sample, int hop_trials, const std::string& socket_dir) {
  const int n = options_.agents;
  const int r = options_.ranks_per_agent;
  sample = std::clamp(sample, 0, n);
  RelayedNcclIdFigures fig;
  fig.upstream_waits = n;
  fig.sampled = sample;
  const std::string key = "nccl/unique_id/relayed";
  std::string value(128, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>((i * 131 + 7) & 0xff);

  // The sampled agents, spread over the range (each on its own agent's connection).
  std::vector<std::unique_ptr<SampledNode>> nodes;
  std::vector<bool> is_sampled(n, false);
  for (int k = 0; k < sample; ++k) {
    auto node = std::make_unique<SampledNode>();
    node->agent = static_cast<int>(static_cast<int64_t>(k) * n / sample);
    if (is_sampled[node->agent]) continue;
    is_sampled[node->agent] = true;
    launcher::StoreRelayOptions ro;
    ro.socket_path = absl::StrCat(socket_dir, "/relay-", node->agent, ".sock");
    ro.upstream = channels_[static_cast<size_t>(node->agent) % channels_.size()];
    ro.token = options_.token;
    SampledNode* raw = node.get();
    ro.on_upstream_wait_answered = [raw](int) { raw->upstream_answered_ns.store(NowNs()); };
    absl::StatusOr<std::unique_ptr<launcher::StoreRelay>> relay = launcher::StoreRelay::Start(ro);
    if (!relay.ok()) {
      fig.first_error = absl::StrCat("relay of agent ", node->agent, ": ", relay.status().ToString());
      ++fig.failed;
      return fig;
    }
    node->relay = *std::move(relay);
    for (int i = 0; i < r; ++i) {
      launcher::CoordinatorClientOptions co;
      co.channel.target = node->relay->target();
      co.token = options_.token;
      co.job_id = options_.job_id;
      co.initial_generation = generation_;
      absl::StatusOr<std::unique_ptr<launcher::CoordinatorClient>> c = launcher::CoordinatorClient::Create(co);
      if (!c.ok()) {
        fig.first_error = c.status().ToString();
        ++fig.failed;
        return fig;
      }
      node->ranks.push_back(*std::move(c));
    }
    node->rank_done_ns.assign(r, 0);
    node->rank_values.assign(r, absl::UnknownError("not answered"));
    nodes.push_back(std::move(node));
  }
  fig.sampled = static_cast<int>(nodes.size());

  v1::StoreWaitRequest request;
  request.mutable_header()->set_job_id(options_.job_id);
  request.mutable_header()->set_generation(generation_);
  request.set_scope(v1::KEY_SCOPE_GENERATION);
  request.add_keys(key);
  request.set_timeout_ms(300000);

  Latch latch;
  std::vector<std::atomic<int64_t>> upstream_ns(n);
  std::vector<std::unique_ptr<UpstreamWaitOp>> ops;
  const int64_t first = NowNs();
  std::vector<std::thread> local;
  for (auto& node : nodes) {
    for (int i = 0; i < r; ++i) {
      local.emplace_back([&, node = node.get(), i] {
        node->rank_values[i] = node->ranks[i]->StoreWait({key}, absl::Seconds(300));
        node->rank_done_ns[i] = NowNs();
      });
    }
  }
  for (int a = 0; a < n; ++a) {
    if (is_sampled[a]) continue;
    auto op = std::make_unique<UpstreamWaitOp>();
    op->latch = &latch;
    op->done_ns = &upstream_ns[a];
    op->context.AddMetadata("x-colossus-token", options_.token);
    auto& stub = stubs_->stubs[static_cast<size_t>(a) % stubs_->stubs.size()];
    op->reader = stub->PrepareAsyncStoreWait(&op->context, request, QueueOf(a));
    op->reader->StartCall();
    op->reader->Finish(&op->response, &op->status, op.get());
    ops.push_back(std::move(op));
  }
  // Every relay has its R local waits and has sent its one upstream wait.
  for (auto& node : nodes) {
    const absl::Time limit = absl::Now() + absl::Seconds(120);
    while (absl::Now() < limit && (node->relay->stats().local_waits < r || node->relay->stats().upstream_waits < 1)) {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  fig.issue_s = Seconds(NowNs() - first);
  fig.settle_s = absl::ToDoubleSeconds(WaitQuiet(absl::Seconds(120)));

  grpc::ClientContext set_context;
  set_context.AddMetadata("x-colossus-token", options_.token);
  set_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::StoreSetRequest set;
  *set.mutable_header() = request.header();
  set.set_scope(v1::KEY_SCOPE_GENERATION);
  set.set_key(key);
  set.set_value(value);
  v1::StoreSetResponse set_response;
  if (options_.progress) options_.progress("(b relayed) set");
  const int64_t set_at = NowNs();
  const grpc::Status set_status = stubs_->stubs[0]->StoreSet(&set_context, set, &set_response);
  fig.set_rtt_s = Seconds(NowNs() - set_at);
  if (!set_status.ok()) fig.first_error = absl::StrCat("StoreSet: ", Describe(set_status));
  const int64_t simulated = static_cast<int64_t>(ops.size());
  if (!latch.WaitFor(simulated, std::chrono::seconds(340))) {
    for (auto& op : ops) op->context.TryCancel();
    latch.WaitFor(simulated, std::chrono::hours(1));
  }
  for (auto& t : local) t.join();
  if (absl::StatusOr<ProcSample> s = SampleProcess(options_.coordinator_pid); s.ok()) fig.coordinator_after = *s;

  // Figures and checks.
  fig.values_ok = set_status.ok();
  int64_t last_upstream = 0, last_rank = 0;
  std::vector<double> hops;
  for (const auto& op : ops) {
    last_upstream = std::max(last_upstream, op->done_ns->load());
    if (!op->status.ok()) {
      ++fig.failed;
      fig.values_ok = false;
      if (fig.first_error.empty()) fig.first_error = absl::StrCat("upstream wait: ", Describe(op->status));
    } else if (op->response.values_size() != 1 || op->response.values(0) != value) {
      fig.values_ok = false;
      if (fig.first_error.empty()) fig.first_error = "upstream wait: wrong value";
    } else {
      ++fig.ok;
    }
  }
  for (auto& node : nodes) {
    const int64_t up = node->upstream_answered_ns.load();
    last_upstream = std::max(last_upstream, up);
    int64_t node_last = 0;
    for (int i = 0; i < r; ++i) {
      node_last = std::max(node_last, node->rank_done_ns[i]);
      const auto& v = node->rank_values[i];
      if (!v.ok()) {
        ++fig.failed;
        fig.values_ok = false;
        if (fig.first_error.empty()) fig.first_error = absl::StrCat("agent ", node->agent, " rank ", i, ": ", v.status().ToString());
      } else if (v->size() != 1 || (*v)[0] != value) {
        fig.values_ok = false;
        if (fig.first_error.empty()) fig.first_error = absl::StrCat("agent ", node->agent, " rank ", i, ": wrong value");
      } else {
        ++fig.ok;
      }
    }
    last_rank = std::max(last_rank, node_last);
    if (up > 0) hops.push_back(Seconds(node_last - up));
    const launcher::StoreRelay::Stats st = node->relay->stats();
    fig.relays_upstream_calls += st.upstream_waits;
    fig.relays_local_waits += st.local_waits;
  }
  fig.set_to_last_upstream_s = Seconds(last_upstream - set_at);
  fig.set_to_last_sampled_rank_s = last_rank > 0 ? Seconds(last_rank - set_at) : 0;
  fig.hop_median_s = Quantile(hops, 0.5);
  fig.hop_max_s = hops.empty() ? 0 : *std::max_element(hops.begin(), hops.end());

  // Quiet trials of the hop through the first sampled relay: R ranks wait on a fresh
  // key, one Set, upstream answer -> last local answer.
  std::vector<double> trial_hops;
  if (!nodes.empty()) {
    SampledNode& node = *nodes.front();
    for (int t = 0; t < hop_trials; ++t) {
      const std::string trial_key = absl::StrCat("hop/", t);
      const int64_t base = node.relay->stats().local_waits;
      node.upstream_answered_ns.store(0);
      std::vector<int64_t> done(r, 0);
      std::vector<char> good(r, 0);
      std::vector<std::thread> threads;
      for (int i = 0; i < r; ++i) {
        threads.emplace_back([&, i] {
          absl::StatusOr<std::vector<std::string>> v = node.ranks[i]->StoreWait({trial_key}, absl::Seconds(30));
          done[i] = NowNs();
          good[i] = v.ok() && v->size() == 1 && (*v)[0] == "x";
        });
      }
      while (node.relay->stats().local_waits < base + r) absl::SleepFor(absl::Microseconds(200));
      grpc::ClientContext c;
      c.AddMetadata("x-colossus-token", options_.token);
      c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::StoreSetRequest s = set;
      s.set_key(trial_key);
      s.set_value("x");
      v1::StoreSetResponse sr;
      const grpc::Status st = stubs_->stubs[0]->StoreSet(&c, s, &sr);
      for (auto& th : threads) th.join();
      const bool all_good = st.ok() && std::all_of(good.begin(), good.end(), [](char b) { return b != 0; });
      if (!all_good) {
        if (fig.first_error.empty()) fig.first_error = absl::StrCat("hop trial ", t, " failed");
        ++fig.failed;
        continue;
      }
      trial_hops.push_back(Seconds(*std::max_element(done.begin(), done.end()) - node.upstream_answered_ns.load()));
    }
  }
  fig.hop_trials = static_cast<int>(trial_hops.size());
  fig.trial_hop_median_s = Quantile(trial_hops, 0.5);
  fig.trial_hop_p99_s = Quantile(trial_hops, 0.99);
  fig.trial_hop_max_s = trial_hops.empty() ? 0 : *std::max_element(trial_hops.begin(), trial_hops.end());
  fig.set_to_last_rank_s = fig.set_to_last_upstream_s + std::max(fig.hop_max_s, fig.trial_hop_max_s);
  for (auto& node : nodes) {
    node->ranks.clear();  // clients before their relay
    node->relay.reset();
  }
  return fig;
}

}  // namespace colossus::bench
