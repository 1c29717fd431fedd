#include "colossus/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "file_util.h"
#include "nlohmann/json.hpp"

namespace colossus {
namespace {

using internal::Fd;
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Hugging Face's reader refuses larger headers; so do we, which also bounds what a
// corrupted length field can make us parse.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeInfo {
  SafetensorsDType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {SafetensorsDType::kBool, "BOOL", 1},       {SafetensorsDType::kU8, "U8", 1},
    {SafetensorsDType::kI8, "I8", 1},           {SafetensorsDType::kF8_E5M2, "F8_E5M2", 1},
    {SafetensorsDType::kF8_E4M3, "F8_E4M3", 1}, {SafetensorsDType::kI16, "I16", 2},
    {SafetensorsDType::kU16, "U16", 2},         {SafetensorsDType::kF16, "F16", 2},
    {SafetensorsDType::kBF16, "BF16", 2},       {SafetensorsDType::kI32, "I32", 4},
    {SafetensorsDType::kU32, "U32", 4},         {SafetensorsDType::kF32, "F32", 4},
    {SafetensorsDType::kF64, "F64", 8},         {SafetensorsDType::kI64, "I64", 8},
    {SafetensorsDType::kU64, "U64", 8},
};

const DTypeInfo& Info(SafetensorsDType t) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == t) return info;
  }
  return kDTypes[0];  // unreachable: the table covers the enum
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// numel * elem_size, or nullopt if it overflows (a corrupted shape must not wrap).
std::optional<uint64_t> ByteCount(const std::vector<int64_t>& shape, size_t elem_size) {
  unsigned __int128 n = elem_size;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    n *= static_cast<uint64_t>(d);
    if (n > static_cast<unsigned __int128>(INT64_MAX)) return std::nullopt;
  }
  return static_cast<uint64_t>(n);
}

absl::Status Corrupt(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": ", what));
}

// ---- Writing ------------------------------------------------------------------------



}  // namespace

size_t SafetensorsDTypeSize(SafetensorsDType t) { return Info(t).size; }
const char* SafetensorsDTypeName(SafetensorsDType t) { return Info(t).name; }

std::optional<SafetensorsDType> ParseSafetensorsDType(const std::string& name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  return std::nullopt;
}

SafetensorsDType ToSafetensorsDType(kernels::DType t) {
  switch (t) {
    case kernels::DType::kF32: return SafetensorsDType::kF32;
    case kernels::DType::kBF16: return SafetensorsDType::kBF16;
    case kernels::DType::kF16: return SafetensorsDType::kF16;
    case kernels::DType::kI32: return SafetensorsDType::kI32;
    case kernels::DType::kF64: return SafetensorsDType::kF64;
  }
  return SafetensorsDType::kU8;  // unreachable
}

std::optional<kernels::DType> ToKernelDType(SafetensorsDType t) {
  switch (t) {
    case SafetensorsDType::kF32: return kernels::DType::kF32;
    case SafetensorsDType::kBF16: return kernels::DType::kBF16;
    case SafetensorsDType::kF16: return kernels::DType::kF16;
    case SafetensorsDType::kI32: return kernels::DType::kI32;
    case SafetensorsDType::kF64: return kernels::DType::kF64;
    default: return std::nullopt;
  }
}

int64_t SafetensorsEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string SafetensorsEntry::DebugString() const {
  return absl::StrCat(name, " ", SafetensorsDTypeName(dtype), " ", ShapeString(shape));
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  // Validate everything and build the header before touching the file system.
  OrderedJson header = OrderedJson::object();
  if (!metadata.empty()) {
    OrderedJson meta = OrderedJson::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header[kMetadataKey] = std::move(meta);
  }
  std::set<std::string> names;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const SafetensorsTensor& t : tensors) {
    if (t.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": a tensor has an empty name"));
    }
    if (t.name == kMetadataKey) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": '", kMetadataKey, "' is reserved and cannot name a tensor"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' appears twice"));
    }
    std::optional<uint64_t> bytes = ByteCount(t.shape, SafetensorsDTypeSize(t.dtype));
    if (!bytes) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "': shape ",
                                                     ShapeString(t.shape),
                                                     " has a negative or oversized dimension"));
    }
    if (*bytes > 0 && t.data == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "' has ", *bytes, " bytes but no data"));
    }
    header[t.name] = {{"dtype", SafetensorsDTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + *bytes}}};
    sizes.push_back(*bytes);
    offset += *bytes;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const OrderedJson::exception& e) {  // names or metadata that are not UTF-8
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot encode the header: ", e.what()));
  }
  // Pad with spaces (valid JSON whitespace) so the data starts 8-byte aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  uint8_t prefix[8];
  uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(n >> (8 * i));

  std::vector<internal::ByteRange> pieces = {{prefix, sizeof(prefix)},
                                             {header_text.data(), header_text.size()}};
  for (size_t i = 0; i < tensors.size(); ++i) pieces.push_back({tensors[i].data, sizes[i]});
  return internal::WriteFileAtomically(path, pieces);
}

// ---- Reading --------------------------------------------------------------------------

struct SafetensorsFile::Mapping {
  void* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base != nullptr) ::munmap(base, size);
  }
};

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot stat"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    return Corrupt(path, absl::StrCat("file is ", file_size,
                                      " bytes, too short for the 8-byte header length"));
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->base = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (mapping->base == MAP_FAILED) {
    mapping->base = nullptr;
    return absl::ErrnoToStatus(errno, absl::StrCat(path, ": mmap of ", file_size,
                                                   " bytes failed"));
  }
  mapping->size = file_size;
  const uint8_t* bytes = static_cast<const uint8_t*>(mapping->base);

  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  if (header_len > file_size - 8) {
    return Corrupt(path, absl::StrCat("header length ", header_len, " exceeds the ",
                                      file_size - 8, " bytes after the 8-byte prefix (file is ",
                                      file_size, " bytes: truncated or not safetensors)"));
  }
  if (header_len > kMaxHeaderBytes) {
    return Corrupt(path, absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                      kMaxHeaderBytes, " bytes"));
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  Json header;
  try {
    header = Json::parse(header_begin, header_begin + header_len);
  } catch (const Json::parse_error& e) {
    return Corrupt(path, absl::StrCat("header (", header_len, " bytes) is not valid JSON: ",
                                      e.what()));
  }
  if (!header.is_object()) {
    return Corrupt(path, absl::StrCat("header is JSON ", header.type_name(),
                                      ", expected an object"));
  }

  SafetensorsFile file;
  file.path_ = path;
  const uint64_t buffer_size = file_size - 8 - header_len;
  const uint8_t* buffer = bytes + 8 + header_len;
  struct Span {
    uint64_t begin, end;
  };
  std::vector<Span> spans;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) {
        return Corrupt(path, absl::StrCat("'", kMetadataKey, "' is JSON ", value.type_name(),
                                          ", expected an object of strings"));
      }
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          return Corrupt(path, absl::StrCat("metadata '", mkey, "' is JSON ",
                                            mvalue.type_name(), ", expected a string"));
        }
        file.metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", key, "': ");
    if (!value.is_object()) {
      return Corrupt(path, absl::StrCat(where, "entry is JSON ", value.type_name(),
                                        ", expected an object"));
    }
    SafetensorsEntry entry;
    entry.name = key;
    auto dtype_it = value.find("dtype");
    if (dtype_it == value.end() || !dtype_it->is_string()) {
      return Corrupt(path, absl::StrCat(where, "missing string field 'dtype'"));
    }
    std::optional<SafetensorsDType> dtype = ParseSafetensorsDType(dtype_it->get<std::string>());
    if (!dtype) {
      return Corrupt(path, absl::StrCat(where, "unknown dtype '", dtype_it->get<std::string>(),
                                        "'"));
    }
    entry.dtype = *dtype;
    auto shape_it = value.find("shape");
    if (shape_it == value.end() || !shape_it->is_array()) {
      return Corrupt(path, absl::StrCat(where, "missing list field 'shape'"));
    }
    for (const Json& d : *shape_it) {
      if (!d.is_number_unsigned()) {
        return Corrupt(path, absl::StrCat(where, "shape ", shape_it->dump(),
                                          " is not a list of non-negative integers"));
      }
      entry.shape.push_back(static_cast<int64_t>(
          std::min<uint64_t>(d.get<uint64_t>(), static_cast<uint64_t>(INT64_MAX))));
    }
    auto offsets_it = value.find("data_offsets");
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      return Corrupt(path, absl::StrCat(where, "'data_offsets' must be two non-negative "
                                               "integers [begin, end]"));
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end || end > buffer_size) {
      return Corrupt(path, absl::StrCat(where, "data_offsets [", begin, ", ", end,
                                        ") out of range of the ", buffer_size,
                                        "-byte data buffer"));
    }
    std::optional<uint64_t> need = ByteCount(entry.shape, SafetensorsDTypeSize(entry.dtype));
    if (!need || *need != end - begin) {
      return Corrupt(path, absl::StrCat(where, "data_offsets [", begin, ", ", end, ") hold ",
                                        end - begin, " bytes but ",
                                        SafetensorsDTypeName(entry.dtype), " ",
                                        ShapeString(entry.shape), " needs ",
                                        need ? absl::StrCat(*need) : std::string("more than 2^63")));
    }
    entry.data = buffer + begin;
    entry.bytes = end - begin;
    file.entries_.push_back(std::move(entry));
    spans.push_back({begin, end});
  }

  // Order by position in the buffer, then require the tensors to tile it exactly: an
  // overlap means two tensors share bytes, a hole or a tail means bytes nobody owns,
  // both signs of a corrupted or foreign header.
  std::vector<size_t> order(file.entries_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return spans[a].begin != spans[b].begin ? spans[a].begin < spans[b].begin
                                            : spans[a].end < spans[b].end;
  });
  uint64_t covered = 0;
  const SafetensorsEntry* prev = nullptr;
  for (size_t i : order) {
    const SafetensorsEntry& e = file.entries_[i];
    if (spans[i].begin < covered) {
      return Corrupt(path, absl::StrCat("tensor '", e.name, "' data_offsets [", spans[i].begin,
                                        ", ", spans[i].end, ") overlap tensor '", prev->name,
                                        "' which ends at ", covered));
    }
    if (spans[i].begin > covered) {
      return Corrupt(path, absl::StrCat("bytes [", covered, ", ", spans[i].begin,
                                        ") of the data buffer belong to no tensor (before '",
                                        e.name, "')"));
    }
    covered = spans[i].end;
    prev = &e;
  }
  if (covered != buffer_size) {
    return Corrupt(path, absl::StrCat("the data buffer is ", buffer_size,
                                      " bytes but the tensors cover only ", covered));
  }
  std::vector<SafetensorsEntry> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) sorted.push_back(std::move(file.entries_[i]));
  file.entries_ = std::move(sorted);
  for (size_t i = 0; i < file.entries_.size(); ++i) file.index_[file.entries_[i].name] = i;
  file.mapping_ = std::move(mapping);
  return file;
}

const SafetensorsEntry* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

}  // namespace colossus
