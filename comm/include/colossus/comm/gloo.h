// The Gloo backend: collectives between CPU processes over TCP (Gloo 0.5, Debian's
// libgloo). Buffers are host memory; every operation completes before it returns.
//
// Beyond Gloo: reduce-scatter (a ring over Gloo's pairs), bf16/f16 arithmetic (widened
// to float per step), int64, avg, the watchdog's sequence numbers and arrival board,
// Split, and errors as absl::Status (Gloo throws; nothing escapes this backend).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "colossus/comm/communicator.h"
#include "colossus/comm/store.h"

namespace colossus::comm {

struct GlooOptions {
  CommOptions comm;
  // Address this rank listens on and advertises to its peers: an IP or a host name
  // that every peer can reach ("127.0.0.1" for one machine).
  std::string hostname = "127.0.0.1";
};

// Creates rank `rank` of a group of `size` ranks. Collective: all `size` ranks call it
// with stores scoped to the same prefix (a PrefixStore unique to this group and
// generation), and it returns once every rank is connected to every other.
//
// Blocks up to options.comm.init_timeout; DeadlineExceeded names the ranks whose
// addresses never appeared. InvalidArgument for a bad rank/size.
//
// Side effect: ignores SIGPIPE for the whole process (if it was at its default), because
// Gloo writes to sockets with writev(2) and a peer that dies would otherwise kill this
// process with SIGPIPE instead of yielding an error.
absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(
    std::shared_ptr<Store> store, int rank, int size, const GlooOptions& options = {});

}  // namespace colossus::comm
