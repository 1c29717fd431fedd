#include "colossus/parallel/dist_env.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace colossus::parallel {
namespace {

// The integer value of `name`, or an error naming it. Whitespace around the digits is
// tolerated (shell scripts), anything else is not.
absl::StatusOr<int64_t> ParseInt(const char* name, const std::string& value) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(value, &v)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s='%s' is not an integer", name, value));
  }
  return v;
}

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || absl::StartsWith(addr, "127.");
}

std::string ThisHostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "127.0.0.1";
  return buf;
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::string DistEnv::DebugString() const {
  std::string store = world_size == 1        ? "no rendezvous"
                      : !coordinator.empty() ? absl::StrCat("coordinator ", coordinator)
                                             : absl::StrCat("store ", master_addr, ":", master_port);
  return absl::StrFormat("rank %d of %d (local %d), %s, generation %d", rank, world_size,
                         local_rank, store, generation);
}

absl::StatusOr<std::optional<DistEnv>> ReadDistEnv(const EnvLookup& lookup) {
  const std::optional<std::string> world = lookup("WORLD_SIZE");
  const std::optional<std::string> rank = lookup("RANK");
  if (!world.has_value()) {
    // A stray RANK without WORLD_SIZE is a half-configured launcher, not a single
    // process: refuse it rather than have every rank train alone.
    if (rank.has_value()) {
      absl::StatusOr<int64_t> r = ParseInt("RANK", *rank);
      if (!r.ok() || *r != 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "RANK='%s' is set but WORLD_SIZE is not; set both (or neither, for one process)",
            *rank));
      }
    }
    return std::optional<DistEnv>();
  }

  DistEnv env;
  absl::StatusOr<int64_t> w = ParseInt("WORLD_SIZE", *world);
  if (!w.ok()) return w.status();
  if (*w < 1 || *w > (1 << 24)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("WORLD_SIZE=%d must be between 1 and %d", *w, 1 << 24));
  }
  env.world_size = static_cast<int>(*w);

  if (!rank.has_value()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WORLD_SIZE=%d is set but RANK is not (each process needs its rank, 0..%d)",
        env.world_size, env.world_size - 1));
  }
  absl::StatusOr<int64_t> r = ParseInt("RANK", *rank);
  if (!r.ok()) return r.status();
  if (*r < 0 || *r >= env.world_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "RANK=%d is out of range for WORLD_SIZE=%d (ranks are 0..%d)", *r, env.world_size,
        env.world_size - 1));
  }
  env.rank = static_cast<int>(*r);

  env.local_rank = env.rank;
  if (std::optional<std::string> v = lookup("LOCAL_WORLD_SIZE"); v.has_value()) {
    absl::StatusOr<int64_t> lw = ParseInt("LOCAL_WORLD_SIZE", *v);
    if (!lw.ok()) return lw.status();
    if (*lw < 1 || *lw > env.world_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "LOCAL_WORLD_SIZE=%d must be between 1 and WORLD_SIZE=%d", *lw, env.world_size));
    }
    env.local_world_size = static_cast<int>(*lw);
  }
  if (std::optional<std::string> v = lookup("LOCAL_RANK"); v.has_value()) {
    absl::StatusOr<int64_t> lr = ParseInt("LOCAL_RANK", *v);
    if (!lr.ok()) return lr.status();
    const int64_t limit = env.local_world_size > 0 ? env.local_world_size : env.world_size;
    if (*lr < 0 || *lr >= limit) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "LOCAL_RANK=%d is out of range (must be in 0..%d, below %s=%d)", *lr, limit - 1,
          env.local_world_size > 0 ? "LOCAL_WORLD_SIZE" : "WORLD_SIZE", limit));
    }
    env.local_rank = static_cast<int>(*lr);
  } else if (env.local_world_size > 0 && env.local_rank >= env.local_world_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LOCAL_RANK is not set and RANK=%d is not a valid local rank for LOCAL_WORLD_SIZE=%d",
        env.rank, env.local_world_size));
  }

  env.coordinator = lookup("COLOSSUS_COORDINATOR").value_or("");
  env.job_id = lookup("COLOSSUS_JOB_ID").value_or("");
  if (std::optional<std::string> v = lookup("COLOSSUS_GENERATION"); v.has_value()) {
    absl::StatusOr<int64_t> g = ParseInt("COLOSSUS_GENERATION", *v);
    if (!g.ok()) return g.status();
    if (*g < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("COLOSSUS_GENERATION=%d must be >= 0", *g));
    }
    env.generation = *g;
  }

  const std::optional<std::string> addr = lookup("MASTER_ADDR");
  const std::optional<std::string> port = lookup("MASTER_PORT");
  if (addr.has_value()) env.master_addr = std::string(absl::StripAsciiWhitespace(*addr));
  if (port.has_value()) {
    absl::StatusOr<int64_t> p = ParseInt("MASTER_PORT", *port);
    if (!p.ok()) return p.status();
    if (*p < 1 || *p > 65535) {
      return absl::InvalidArgumentError(
          absl::StrFormat("MASTER_PORT=%d is not a TCP port (1..65535)", *p));
    }
    env.master_port = static_cast<int>(*p);
  }
  // One rank needs no rendezvous; several need somewhere to meet.
  if (env.world_size > 1 && env.coordinator.empty()) {
    if (env.master_addr.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "WORLD_SIZE=%d needs MASTER_ADDR (the address where rank 0 serves the rendezvous "
          "store), or COLOSSUS_COORDINATOR",
          env.world_size));
    }
    if (env.master_port == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "WORLD_SIZE=%d needs MASTER_PORT (the port of rank 0's rendezvous store at "
          "MASTER_ADDR=%s), or COLOSSUS_COORDINATOR",
          env.world_size, env.master_addr));
    }
  }

  if (std::optional<std::string> v = lookup("COLOSSUS_GLOO_HOSTNAME"); v.has_value() && !v->empty()) {
    env.gloo_hostname = *v;
  } else if (env.world_size == 1 || env.master_addr.empty() || IsLoopback(env.master_addr)) {
    env.gloo_hostname = "127.0.0.1";
  } else {
    env.gloo_hostname = ThisHostName();
  }

  env.cuda_device = env.local_rank;
  if (std::optional<std::string> v = lookup("CUDA_VISIBLE_DEVICES"); v.has_value()) {
    const std::vector<std::string> devices = absl::StrSplit(*v, ',', absl::SkipEmpty());
    if (devices.size() == 1) env.cuda_device = 0;
  }
  return std::optional<DistEnv>(env);
}

}  // namespace colossus::parallel
