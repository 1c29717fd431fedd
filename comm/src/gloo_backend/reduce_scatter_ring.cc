#include "gloo_backend/reduce_scatter_ring.h"

#include <algorithm>
#include <vector>

#include "colossus/check.h"
#include "gloo/transport/unbound_buffer.h"
#include "gloo/types.h"

namespace colossus::comm::internal {

void RingReduceScatter(const std::shared_ptr<gloo::Context>& context, const void* in, void* out,
                       size_t chunk_count, size_t element_size, ReduceFn reduce, uint32_t tag,
                       std::chrono::milliseconds timeout) {
  const int n = context->size;
  const int r = context->rank;
  CHECK(n >= 2 && chunk_count > 0) << "ring reduce-scatter of " << chunk_count << " on " << n;
  const size_t chunk = chunk_count * element_size;
  const int right = (r + 1) % n;
  const int left = (r + n - 1) % n;
  const uint64_t slot = gloo::Slot::build(kReduceScatterSlotPrefix, tag);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Gloo's waits take a duration: give each the time left to the whole operation.
  auto left_ms = [&] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()));
  };
  auto chunk_of = [&](int k) { return static_cast<size_t>(((k % n) + n) % n); };

  // Gloo only reads a buffer it sends from; the const_cast never leads to a write.
  char* input = static_cast<char*>(const_cast<void*>(in));
  std::unique_ptr<gloo::transport::UnboundBuffer> in_buf =
      context->createUnboundBuffer(input, chunk * static_cast<size_t>(n));
  // Two halves: one receives this step's partial while the other sends the last one.
  std::vector<char> scratch(2 * chunk);
  std::unique_ptr<gloo::transport::UnboundBuffer> tmp =
      context->createUnboundBuffer(scratch.data(), scratch.size());

  for (int k = 0; k <= n - 2; ++k) {
    const size_t recv_half = static_cast<size_t>(k % 2) * chunk;
    tmp->recv(left, slot, recv_half, chunk);
    gloo::transport::UnboundBuffer* sender = k == 0 ? in_buf.get() : tmp.get();
    const size_t send_offset =
        k == 0 ? chunk_of(r - 1) * chunk : static_cast<size_t>((k - 1) % 2) * chunk;
    sender->send(right, slot, send_offset, chunk);

    tmp->waitRecv(left_ms());
    const size_t c = chunk_of(r - k - 2);
    char* partial = scratch.data() + recv_half;
    void* dst = k == n - 2 ? out : partial;
    reduce(dst, partial, input + c * chunk, chunk_count);
    // The half just sent receives at step k+1: its send must be finished first.
    sender->waitSend(left_ms());
  }
}

}  // namespace colossus::comm::internal
