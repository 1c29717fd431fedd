// LoadAgents: (c) one health stream per agent, beating once a second.
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "load_internal.h"

namespace colossus::bench {
namespace {

struct Counters {
  Latch opened;    // first message written
  Latch finished;  // stream finished (after the phase's cancel, or broken)
  std::atomic<int64_t> beats{0};
  std::atomic<int64_t> commands{0};
  std::atomic<int> failed{0};
  std::mutex error_mu;
  std::string first_error;
};

class HealthAgent;

struct HealthTag final : LoadAgents::Op {
  enum Kind { kStart, kWrite, kRead, kFinish };
  HealthTag(HealthAgent* a, Kind k) : agent(a), kind(k) {}
  HealthAgent* agent;
  Kind kind;
  void Done(bool ok) override;
};

// One agent's stream. Writes come from the pacer (the phase's thread) and, for the
// first message, from the queue thread; `writing` keeps one write in flight at most,
// and `mu` keeps Write from racing Finish.
class HealthAgent {
 public:
  HealthAgent(int index, const std::string& job, int64_t generation, int ranks, Counters* counters)
      : index_(index), counters_(counters) {
    first_.mutable_header()->set_job_id(job);
    first_.mutable_header()->set_generation(generation);
    first_.set_node_id(NodeId(index));
    for (int r = 0; r < ranks; ++r) {
      v1::RankHealth* h = first_.add_ranks();
      h->set_local_rank(r);
      h->set_state(v1::RANK_STATE_RUNNING);
      h->set_step(0);
      h->set_collective_seq(0);
      h->set_collective("all_reduce");
      h->set_loss(3.0f);
      h->set_tokens_per_s(1.0e5);
    }
    // Later beats leave the header and node id out (the stream is already bound).
    beat_ = first_;
    beat_.clear_header();
    beat_.clear_node_id();
  }

  void Start(v1::Coordinator::Stub* stub, grpc::CompletionQueue* cq, const std::string& token) {
    context_.AddMetadata("x-colossus-token", token);
    stream_ = stub->PrepareAsyncHealth(&context_, cq);
    stream_->StartCall(&start_tag_);
  }

  // The pacer's beat; false when skipped (previous beat still in flight, or ended).
  bool Beat() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_ || ended_) return true;
    if (writing_) return false;
    writing_ = true;
    ++step_;
    beat_.set_sent_unix_ms(absl::ToUnixMillis(absl::Now()));
    for (v1::RankHealth& h : *beat_.mutable_ranks()) {
      h.set_step(step_);
      h.set_collective_seq(step_ * 12);
    }
    stream_->Write(beat_, &write_tag_);
    return true;
  }

  void Cancel() { context_.TryCancel(); }

  void OnDone(HealthTag::Kind kind, bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    switch (kind) {
      case HealthTag::kStart:
        if (!ok) {
          ended_ = true;
          stream_->Finish(&status_, &finish_tag_);
          return;
        }
        started_ = true;
        first_.set_sent_unix_ms(absl::ToUnixMillis(absl::Now()));
        writing_ = true;
        stream_->Write(first_, &write_tag_);
        stream_->Read(&command_, &read_tag_);
        return;
      case HealthTag::kWrite:
        writing_ = false;
        if (ok) {
          if (!opened_) {
            opened_ = true;
            counters_->opened.Arrive();
          } else {
            counters_->beats.fetch_add(1, std::memory_order_relaxed);
          }
        }
        return;
      case HealthTag::kRead:
        if (ok) {
          counters_->commands.fetch_add(1, std::memory_order_relaxed);
          stream_->Read(&command_, &read_tag_);
          return;
        }
        ended_ = true;
        stream_->Finish(&status_, &finish_tag_);
        return;
      case HealthTag::kFinish:
        if (!status_.ok() && status_.error_code() != grpc::StatusCode::CANCELLED) {
          counters_->failed.fetch_add(1);
          std::lock_guard<std::mutex> elock(counters_->error_mu);
          if (counters_->first_error.empty()) {
            counters_->first_error = absl::StrCat(NodeId(index_), ": ", static_cast<int>(status_.error_code()),
                                                  " ", status_.error_message());
          }
        }
        counters_->finished.Arrive();
        return;
    }
  }

 private:
  const int index_;
  Counters* const counters_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::NodeHealth, v1::Command>> stream_;
  v1::NodeHealth first_, beat_;
  v1::Command command_;
  grpc::Status status_;
  std::mutex mu_;
  bool started_ = false, writing_ = false, ended_ = false, opened_ = false;
  int64_t step_ = 0;
  HealthTag start_tag_{this, HealthTag::kStart};
  HealthTag write_tag_{this, HealthTag::kWrite};
  HealthTag read_tag_{this, HealthTag::kRead};
  HealthTag finish_tag_{this, HealthTag::kFinish};
};

void HealthTag::Done(bool ok) { agent->OnDone(kind, ok); }

}  // namespace

HeartbeatFigures LoadAgents::Heartbeats(absl::Duration duration) {
  const int n = options_.agents;
  HeartbeatFigures fig;
  Counters counters;
  std::vector<std::unique_ptr<HealthAgent>> agents(n);
  for (int i = 0; i < n; ++i) {
    agents[i] = std::make_unique<HealthAgent>(i, options_.job_id, generation_,
                                              options_.ranks_per_agent, &counters);
  }
  const int64_t open_start = NowNs();
  for (int i = 0; i < n; ++i) {
    agents[i]->Start(stubs_->stubs[static_cast<size_t>(i) % stubs_->stubs.size()].get(),
                     QueueOf(i), options_.token);
  }
  // Opened, or failed to open (those finish early and count as failed).
  for (int waited = 0; waited < 1200; ++waited) {
    if (counters.opened.count() + counters.finished.count() >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  fig.open_s = Seconds(NowNs() - open_start);
  fig.streams_open = static_cast<int>(counters.opened.count());

  // The pacer: agent i beats at i/n of every second, so the load is spread evenly as
  // it would be from agents started at unrelated times.
  const int64_t period = 1'000'000'000;
  const int64_t warmup = 2'000'000'000;
  const int64_t run = absl::ToInt64Nanoseconds(duration);
  const int64_t begin = NowNs();
  ProcSample c0, l0;
  int64_t beats0 = 0;
  bool sampled = false;
  int64_t late = 0;
  for (int64_t cycle = 0;; ++cycle) {
    const int64_t cycle_start = begin + cycle * period;
    // Cycles start on the second, so the window ends when its last cycle's beats are due.
    if (const int64_t wait = cycle_start - NowNs(); wait > 0) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
    }
    if (!sampled && cycle_start >= begin + warmup) {
      if (auto s = SampleProcess(options_.coordinator_pid); s.ok()) c0 = *s;
      if (auto s = SampleProcess(0); s.ok()) l0 = *s;
      beats0 = counters.beats.load();
      sampled = true;
    }
    if (cycle_start >= begin + warmup + run) break;
    for (int i = 0; i < n; ++i) {
      const int64_t due = cycle_start + period * i / n;
      const int64_t wait = due - NowNs();
      // Sleep in steps of at least a millisecond: finer sleeps cost more than they buy.
      if (wait > 1'000'000) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
      if (!agents[i]->Beat() && sampled) ++late;
    }
  }
  const int64_t beats1 = counters.beats.load();
  ProcSample c1, l1;
  if (auto s = SampleProcess(options_.coordinator_pid); s.ok()) c1 = *s;
  if (auto s = SampleProcess(0); s.ok()) l1 = *s;
  fig.measured_s = absl::ToDoubleSeconds(c1.when - c0.when);
  fig.beats = beats1 - beats0;
  fig.beats_per_s = fig.measured_s > 0 ? static_cast<double>(fig.beats) / fig.measured_s : 0;
  fig.late_beats = late;
  fig.commands = counters.commands.load();
  fig.coordinator_cores = CoresBetween(c0, c1);
  fig.load_cores = CoresBetween(l0, l1);
  fig.coordinator_after = c1;

  // Streams end (cancelled) before their state is freed.
  for (auto& a : agents) a->Cancel();
  counters.finished.WaitFor(n, std::chrono::hours(1));
  fig.streams_failed = counters.failed.load();
  fig.first_error = counters.first_error;
  return fig;
}

}  // namespace colossus::bench
