// Element types and reductions that every communicator backend speaks.
//
// comm/ has its own DataType rather than kernels::DType: comm may not depend on
// kernels/, and collectives need int64 (counters, sample indices) which kernels do not.
// The runtime maps one onto the other at its boundary.
#pragma once

#include <cstddef>
#include <cstdint>

namespace colossus::comm {

enum class DataType : uint8_t {
  kF32 = 0,
  kBF16 = 1,  // bfloat16, stored as uint16_t bits
  kF16 = 2,   // IEEE binary16, stored as uint16_t bits
  kI32 = 3,
  kI64 = 4,
};

// Bytes per element.
constexpr size_t DataTypeSize(DataType t) {
  switch (t) {
    case DataType::kF32: return 4;
    case DataType::kBF16: return 2;
    case DataType::kF16: return 2;
    case DataType::kI32: return 4;
    case DataType::kI64: return 8;
  }
  return 0;
}

constexpr const char* DataTypeName(DataType t) {
  switch (t) {
    case DataType::kF32: return "f32";
    case DataType::kBF16: return "bf16";
    case DataType::kF16: return "f16";
    case DataType::kI32: return "i32";
    case DataType::kI64: return "i64";
  }
  return "?";
}

constexpr bool IsValid(DataType t) { return static_cast<uint8_t>(t) <= 4; }

// Element-wise reductions.
//   kAvg: the sum divided by the group size. Floating types divide after summing
//   (on the CPU; NCCL pre-scales, which can differ in the last bit). Integer types
//   divide with C++ truncation toward zero.
enum class ReduceOp : uint8_t { kSum = 0, kAvg = 1, kMax = 2, kMin = 3 };

constexpr const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

constexpr bool IsValid(ReduceOp op) { return static_cast<uint8_t>(op) <= 3; }

}  // namespace colossus::comm
