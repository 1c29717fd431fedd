// The TcpStore wire format: length-prefixed frames of length-prefixed fields.
//
//   frame    := u32 body_length (little endian) , body
//   request  := u8 opcode , fields...
//   response := u8 absl::StatusCode , bytes message , fields... (only when code is OK)
//   u64      := 8 bytes little endian;  bytes := u32 length , raw bytes
//
//   op           request fields                          OK response fields
//   kSet         key, value                              -
//   kGet         key                                     value           (or NotFound)
//   kWait        u64 timeout_ms, u64 n, n x key          -               (or DeadlineExceeded)
//   kAdd         key, u64 delta (two's complement)       u64 new value   (or InvalidArgument)
//   kCompareSet  key, u8 has_expected, expected, desired u8 swapped, u8 has_value, value
//   kDelete      key                                     u8 existed
//
// One request is outstanding per connection: the client's next request waits for the
// reply, so a held Wait never reorders replies.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace colossus::comm::internal::tcp_store {

enum Opcode : uint8_t {
  kSet = 1,
  kGet = 2,
  kWait = 3,
  kAdd = 4,
  kCompareSet = 5,
  kDelete = 6,
};

// Larger frames are refused: a corrupt length must not make the server allocate 4 GiB.
constexpr uint32_t kMaxFrameBytes = 256u << 20;

// A wait timeout of this many milliseconds or more means "no timeout".
constexpr uint64_t kInfiniteMs = uint64_t{1} << 62;

// Builds one frame: the length prefix is patched in by Finish().
class Writer {
 public:
  Writer() { out_.assign(4, '\0'); }
  Writer& U8(uint8_t v);
  Writer& U64(uint64_t v);
  Writer& Bytes(std::string_view v);
  // The complete frame (length prefix included); the Writer is spent afterwards.
  std::string Finish();

 private:
  std::string out_;
};

// Reads fields of one frame body; every getter returns false past the end.
class Reader {
 public:
  explicit Reader(std::string_view body) : in_(body) {}
  bool U8(uint8_t* v);
  bool U64(uint64_t* v);
  bool Bytes(std::string* v);
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

// Parses the body length out of a 4-byte prefix.
uint32_t DecodeLength(const char prefix[4]);

const char* OpcodeName(uint8_t op);

}  // namespace colossus::comm::internal::tcp_store
