#include "store/tcp_store_protocol.h"

#include <cstring>

#include "colossus/check.h"

namespace colossus::comm::internal::tcp_store {
namespace {

void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

}  // namespace

Writer& Writer::U8(uint8_t v) {
  out_.push_back(static_cast<char>(v));
  return *this;
}

Writer& Writer::U64(uint64_t v) {
  PutLe(&out_, v, 8);
  return *this;
}

Writer& Writer::Bytes(std::string_view v) {
  CHECK(v.size() <= kMaxFrameBytes) << "store field of " << v.size() << " bytes";
  PutLe(&out_, v.size(), 4);
  out_.append(v);
  return *this;
}

std::string Writer::Finish() {
  const uint64_t body = out_.size() - 4;
  for (int i = 0; i < 4; ++i) out_[i] = static_cast<char>((body >> (8 * i)) & 0xff);
  return std::move(out_);
}

bool Reader::U8(uint8_t* v) {
  if (in_.size() < 1) return false;
  *v = static_cast<uint8_t>(in_[0]);
  in_.remove_prefix(1);
  return true;
}

bool Reader::U64(uint64_t* v) {
  if (in_.size() < 8) return false;
  *v = GetLe(in_.data(), 8);
  in_.remove_prefix(8);
  return true;
}

bool Reader::Bytes(std::string* v) {
  if (in_.size() < 4) return false;
  const uint64_t n = GetLe(in_.data(), 4);
  if (in_.size() - 4 < n) return false;
  v->assign(in_.data() + 4, n);
  in_.remove_prefix(4 + n);
  return true;
}

uint32_t DecodeLength(const char prefix[4]) { return static_cast<uint32_t>(GetLe(prefix, 4)); }

const char* OpcodeName(uint8_t op) {
  switch (op) {
    case kSet: return "Set";
    case kGet: return "Get";
    case kWait: return "Wait";
    case kAdd: return "Add";
    case kCompareSet: return "CompareSet";
    case kDelete: return "Delete";
  }
  return "?";
}

}  // namespace colossus::comm::internal::tcp_store
