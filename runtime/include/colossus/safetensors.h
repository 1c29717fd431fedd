// The safetensors file format (https://github.com/huggingface/safetensors), our own
// reader and writer:
//
//   [8 bytes]  N, the header length, unsigned little-endian
//   [N bytes]  UTF-8 JSON: {"<name>": {"dtype": "F32", "shape": [2, 3],
//                                     "data_offsets": [begin, end]}, ...,
//                           "__metadata__": {"<key>": "<string value>", ...}}
//   [rest]     the byte buffer; offsets are relative to its start, row-major,
//              little-endian, tensors packed without holes.
//
// The writer pads the header with spaces to a multiple of 8 bytes (as Hugging Face's
// does), so the buffer starts 8-byte aligned in the file.
//
// Errors name the file and what is wrong with it, e.g.
//   "/ckpt/w.safetensors: tensor 'wte': data_offsets [0, 96) hold 96 bytes but F32 [4, 8]
//    needs 128"
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colossus/kernels/dtype.h"

namespace colossus {

// Every element type the format defines. F8 types are read and written as raw bytes.
enum class SafetensorsDType : uint8_t {
  kBool, kU8, kI8, kF8_E5M2, kF8_E4M3, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64,
  kI64, kU64,
};

size_t SafetensorsDTypeSize(SafetensorsDType t);
// The format's spelling: "F32", "BF16", "I64", ...
const char* SafetensorsDTypeName(SafetensorsDType t);
// Parses the format's spelling; nullopt for anything else.
std::optional<SafetensorsDType> ParseSafetensorsDType(const std::string& name);
// The safetensors dtype of a kernel dtype (every kernels::DType has one).
SafetensorsDType ToSafetensorsDType(kernels::DType t);
// The kernel dtype of a safetensors dtype, nullopt when kernels have no such type.
std::optional<kernels::DType> ToKernelDType(SafetensorsDType t);

// One tensor to write. `data` points to host memory holding numel(shape) * dtype size
// bytes (row-major); it is only read, and only during WriteSafetensors.
struct SafetensorsTensor {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;  // [] is a scalar (one element); a 0 dimension is empty
  const void* data = nullptr;  // may be null only when the tensor has no elements
};

// Writes `tensors` (in the order given) and `metadata` to `path` atomically: into a
// temporary file in the same directory, fsync'ed, then renamed over `path` and the
// directory fsync'ed. On any error (full disk, permission, bad argument) the temporary
// file is removed, `path` keeps whatever it held before, and the Status names the file.
// InvalidArgument for an empty or duplicate name, the reserved name "__metadata__", a
// negative dimension or a null `data` for a non-empty tensor.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// One tensor of an opened file; `data` points into the file's mapping and stays valid
// as long as any SafetensorsFile copy that produced it lives.
struct SafetensorsEntry {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // unaligned in general: memcpy out, do not cast
  size_t bytes = 0;

  int64_t numel() const;
  // "wte F32 [128, 64]"
  std::string DebugString() const;
};

// A validated, read-only, memory-mapped safetensors file. Copies share the mapping.
// Thread safety: const methods may be called from any number of threads.
class SafetensorsFile {
 public:
  // Maps `path` and validates it completely before returning: the header length fits
  // the file, the header is a JSON object, every dtype is known, every shape is a list
  // of non-negative integers, every data_offsets pair lies in the buffer and holds
  // exactly numel * dtype-size bytes, tensors neither overlap nor leave holes, and
  // metadata values are strings. Errors: NotFound / PermissionDenied for a file that
  // cannot be opened, DataLoss for a malformed one, each naming the file.
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  const std::string& path() const { return path_; }
  // Every tensor, in the order of its data in the file.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  // nullptr if the file has no tensor of that name.
  const SafetensorsEntry* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<const Mapping> mapping_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;
};

}  // namespace colossus
