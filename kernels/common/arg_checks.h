// Argument checks shared by every kernels::Backend implementation. Misuse is a bug in
// the caller (backend.h), so each check aborts, naming the op and the argument.
// Internal to kernels/: backends include it as "common/arg_checks.h".
#pragma once

#include <cstddef>
#include <cstdint>

#include "colossus/check.h"
#include "colossus/kernels/dtype.h"

namespace colossus::kernels::internal {

inline void CheckNonNegative(const char* op, const char* what, int64_t value) {
  CHECK(value >= 0) << op << ": " << what << " = " << value << " is negative";
}

// `v` is present (unless the op needs no elements) and holds at least `need` elements
// (a view may be longer than the op uses, e.g. wpe for T < maxT).
inline void CheckPresentAndLong(const View& v, int64_t need, const char* op, const char* arg) {
  CHECK(need == 0 || v.data != nullptr) << op << ": " << arg << " is absent (null data)";
  CHECK(v.numel >= need) << op << ": " << arg << " has " << v.numel
                         << " elements, the op needs " << need;
}

template <typename P>
P* Pointer(P* p, int64_t need, const char* op, const char* arg) {
  CHECK(need == 0 || p != nullptr) << op << ": " << arg << " is null but the op needs "
                                   << need << " elements";
  return p;
}

// Vp of a [Vp, C] embedding table.
inline int64_t TableRows(const View& wte, int C, const char* op) {
  if (C == 0) return 0;
  CHECK(wte.numel % C == 0) << op << ": wte has " << wte.numel
                            << " elements, not a multiple of C = " << C;
  return wte.numel / C;
}

inline void CheckVocab(const char* op, int64_t N, int V, int Vp) {
  CheckNonNegative(op, "N", N);
  CHECK(V > 0 && V <= Vp) << op << ": need 0 < V <= Vp, got V = " << V << ", Vp = " << Vp;
}

inline void CheckAttentionShape(const char* op, int B, int T, int C, int NH) {
  CheckNonNegative(op, "B", B);
  CheckNonNegative(op, "T", T);
  CheckNonNegative(op, "C", C);
  CHECK(NH > 0 && C % NH == 0) << op << ": need NH > 0 dividing C, got C = " << C
                               << ", NH = " << NH;
}

// Whether the byte ranges [a, a + bytes) and [b, b + bytes) share a byte.
inline bool Overlap(const void* a, const void* b, size_t bytes) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return bytes > 0 && x < y + bytes && y < x + bytes;
}

}  // namespace colossus::kernels::internal
