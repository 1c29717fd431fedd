#include "watchdog/arrival_board.h"

#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "watchdog/bounded_call.h"

namespace colossus::comm::internal {
namespace {

constexpr char kFailureKey[] = "failure";
// Name at most this many missing ranks: a 10,000-rank job should get a readable line.
constexpr int kMaxNamed = 16;

std::string ArrivedKey(int rank) { return absl::StrCat("arrived/", rank); }

}  // namespace

ArrivalBoard::ArrivalBoard(std::shared_ptr<Store> store, int rank, int size)
    : store_(std::move(store)), rank_(rank), size_(size) {
  publisher_ = std::thread([this] { PublishLoop(); });
}

ArrivalBoard::~ArrivalBoard() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  publisher_.join();
}

void ArrivalBoard::Arrive(uint64_t seq, const char* op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    latest_seq_ = seq;
    latest_op_ = op;
  }
  wake_.notify_one();
}

void ArrivalBoard::PublishLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || latest_seq_ != published_seq_; });
    if (stop_) return;
    const uint64_t seq = latest_seq_;
    const char* op = latest_op_;
    lock.unlock();
    // A failed write is not retried in a loop: the next Arrive writes a newer marker,
    // and a diagnosis with a stale marker is still better than a busy thread.
    const absl::Status s = store_->Set(ArrivedKey(rank_), absl::StrCat(seq, " ", op));
    (void)s;
    lock.lock();
    published_seq_ = seq;
    // Rate limit: arrivals in the next interval are coalesced into one write.
    wake_.wait_for(lock, absl::ToChronoMilliseconds(kPublishInterval), [&] { return stop_; });
  }
}

namespace {

// The failure-path work, as free functions that own what they use: they may outlive
// the board when the Store does not answer (CallWithin).
std::string DescribeMissingNow(const std::shared_ptr<Store>& store, int self, int size,
                               uint64_t seq, const std::string& op) {
  std::vector<std::string> missing;
  int count = 0;
  for (int r = 0; r < size; ++r) {
    if (r == self) continue;
    absl::StatusOr<std::string> v = store->Get(ArrivedKey(r));
    std::string why;
    if (!v.ok()) {
      if (v.status().code() != absl::StatusCode::kNotFound) {
        return absl::StrCat("(cannot read the arrival board: ", v.status().message(), ")");
      }
      why = "no collective yet";
    } else {
      std::pair<std::string, std::string> parts = absl::StrSplit(*v, absl::MaxSplits(' ', 1));
      uint64_t their_seq = 0;
      if (!absl::SimpleAtoi(parts.first, &their_seq)) {
        why = absl::StrCat("unreadable marker '", *v, "'");
      } else if (their_seq > seq || (their_seq == seq && parts.second == op)) {
        continue;  // arrived (and maybe went on)
      } else if (their_seq == seq) {
        why = absl::StrCat("at seq ", seq, " but in ", parts.second, ", not ", op);
      } else {
        why = absl::StrCat("last at seq ", their_seq, " ", parts.second);
      }
    }
    if (++count <= kMaxNamed) missing.push_back(absl::StrCat(r, " (", why, ")"));
  }
  if (count == 0) return absl::StrCat("every rank arrived at seq ", seq);
  std::string out = absl::StrCat("ranks that did not arrive at seq ", seq, ": ",
                                 absl::StrJoin(missing, ", "));
  if (count > kMaxNamed) absl::StrAppend(&out, ", ... (", count - kMaxNamed, " more)");
  return out;
}

std::optional<ArrivalBoard::Failure> RecordFailureNow(const std::shared_ptr<Store>& store,
                                                      const std::string& mine) {
  absl::StatusOr<CompareSetResult> r = store->CompareSet(kFailureKey, std::nullopt, mine);
  if (!r.ok() || !r->value.has_value()) return std::nullopt;
  std::vector<std::string> parts = absl::StrSplit(*r->value, absl::MaxSplits(' ', 3));
  ArrivalBoard::Failure f;
  int code = 0;
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &f.rank) ||
      !absl::SimpleAtoi(parts[1], &f.seq) || !absl::SimpleAtoi(parts[2], &code)) {
    return std::nullopt;
  }
  f.code = static_cast<absl::StatusCode>(code);
  f.message = std::move(parts[3]);
  return f;
}

}  // namespace

std::string ArrivalBoard::DescribeMissing(uint64_t seq, const char* op) {
  std::optional<std::string> text = CallWithin<std::string>(
      kDiagnosisTimeout, [store = store_, self = rank_, size = size_, seq, op = std::string(op)] {
        return DescribeMissingNow(store, self, size, seq, op);
      });
  if (!text) {
    return absl::StrCat("(the arrival board did not answer within ",
                        absl::FormatDuration(kDiagnosisTimeout), ")");
  }
  return *std::move(text);
}

std::optional<ArrivalBoard::Failure> ArrivalBoard::RecordFailure(const Failure& failure) {
  std::string mine = absl::StrCat(failure.rank, " ", failure.seq, " ",
                                  static_cast<int>(failure.code), " ", failure.message);
  std::optional<std::optional<Failure>> r = CallWithin<std::optional<Failure>>(
      kDiagnosisTimeout,
      [store = store_, mine = std::move(mine)] { return RecordFailureNow(store, mine); });
  return r ? *std::move(r) : std::nullopt;
}

}  // namespace colossus::comm::internal
