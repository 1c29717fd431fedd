#include "colossus/tensor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossus {

std::string Tensor::DebugString() const {
  return absl::StrCat(name, " [", absl::StrJoin(shape, ", "), "] ", kernels::DTypeName(dtype));
}

}  // namespace colossus
