#!/usr/bin/env bash
# Builds the GPU-relevant programs HERE (a build machine: Debian dev packages and the
# CUDA toolkit, no GPU needed) and packs them, stripped, with every shared library they
# need that a stock CUDA image lacks (abseil, yaml-cpp, sentencepiece, OpenBLAS and its
# Fortran/OpenMP runtimes, ...), into one relocatable archive for scripts/gpu-check.sh,
# which unpacks and runs it on a GPU host (see its header for the `run` invocation).
#
#   scripts/gpu-bundle.sh                       # release preset (build/release), sm_90a
#   BUILD_DIR=build/h5 scripts/gpu-bundle.sh    # an already-configured build tree
#   CUDA_ARCH=80 scripts/gpu-bundle.sh          # another GPU (configures build/gpu-sm80)
#
# Output: .gpu-bundle/colossus-gpu-bundle.tar.xz (ignored by git; `run` carries it),
# laid out as
#   bin/          the programs (tests, train_gpt, benchmarks), stripped
#   lib/          their non-system shared libraries (LD_LIBRARY_PATH=lib)
#   lib-fallback/ this machine's libstdc++ and libgcc_s, used only when the host's are
#                 older than the programs need
#   share/        data files and scripts the programs need (the attention benchmark's
#                 torch script; the GPT-2 step benchmark's runner, torch side and
#                 tests/torch_ref/gpt_reference.py)
#   MANIFEST      commit, build, and the libraries the GPU host must provide itself:
#                 the driver's libcuda.so.1 and CUDA 13's libcublasLt.so.13 (~500 MB, in
#                 every CUDA 13 toolkit and in the nvidia-cublas wheel, so not shipped)
# The CUDA runtime is linked statically. NCCL (colossus_comm_nccl_test, colossus-bench)
# is linked dynamically and not shipped (libnccl.so.2 is ~220 MB): the host provides it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# Programs to ship, by CMake target name. Those this tree does not define are skipped
# with a note (the list runs ahead of some modules).
targets=(
  colossus_cuda_test colossus_cuda_train_test colossus_kernels_test colossus_runtime_test
  colossus_comm_test colossus_torch_ref_test
  train_gpt colossus-gpu-kernel-bench colossus-attention-bench colossus-cpu-bench
  colossus_comm_nccl_test colossus-bench
)

if [[ -n "${BUILD_DIR:-}" ]]; then
  build="$BUILD_DIR"
  [[ -f "$build/build.ninja" || -f "$build/Makefile" ]] || { echo "BUILD_DIR=$build is not a configured build tree" >&2; exit 2; }
elif [[ -n "${CUDA_ARCH:-}" ]]; then
  build="build/gpu-sm${CUDA_ARCH}"
  [[ -f "$build/build.ninja" ]] || cmake --preset release -B "$build" -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" >/dev/null
else
  build="build/release"
  [[ -f "$build/build.ninja" ]] || cmake --preset release >/dev/null
fi

available=$(cmake --build "$build" --target help | sed -n 's/^\([A-Za-z0-9_.+-]*\): .*/\1/p')
build_targets=()
for t in "${targets[@]}"; do
  if grep -qx "$t" <<<"$available"; then build_targets+=("$t"); else echo "note: no target $t in this tree, not bundled"; fi
done
echo "building ${build_targets[*]} in $build"
cmake --build "$build" -j"$(nproc)" --target "${build_targets[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/lib-fallback" "$stage/share"

for t in "${build_targets[@]}"; do
  exe=$(find "$build" -type f -name "$t" -perm -u+x -not -path '*/CMakeFiles/*' | head -n1)
  [[ -n "$exe" ]] || { echo "built $t but cannot find it under $build" >&2; exit 1; }
  # strip drops symbols and DWARF; the CUDA fatbinary is an allocated section and stays.
  strip --strip-unneeded -o "$stage/bin/$t" "$exe"
done

# Shared libraries: everything ldd resolves, except what every Linux host has (glibc's
# parts, the loader), what the GPU host's driver and CUDA provide (libcuda, cuBLAS,
# cudart, NCCL), and the C++ runtime, which goes to lib-fallback instead.
system_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libutil\.so|libcuda\.so|libcublas|libcudart|libnccl|libnvidia)'
cxx_re='^(libstdc\+\+\.so|libgcc_s\.so)'
declare -A seen=()
for exe in "$stage"/bin/*; do
  while read -r name path; do
    [[ -n "$name" && -n "${seen[$name]:-}" ]] && continue
    seen[$name]=1
    if [[ "$name" =~ $system_re ]]; then continue; fi
    if [[ "$path" == "not" ]]; then echo "warning: $exe needs $name, not found here" >&2; continue; fi
    if [[ "$name" =~ $cxx_re ]]; then cp -L "$path" "$stage/lib-fallback/$name"; continue; fi
    cp -L "$path" "$stage/lib/$name"
    strip --strip-unneeded "$stage/lib/$name" 2>/dev/null || true
  # Only "name => path" lines: the others are the vDSO and the loader.
  done < <(ldd "$exe" | sed -n 's/^[[:space:]]*\([^ ]*\) => \([^ ]*\).*/\1 \2/p')
done

# Self-containment: every library anything in the bundle needs is in the bundle or is one
# the host provides (system_re). ldd above resolved through this machine's directories;
# this checks the DT_NEEDED entries themselves.
missing=0
for f in "$stage"/bin/* "$stage"/lib/*; do
  for need in $(objdump -p "$f" | awk '/NEEDED/ {print $2}'); do
    if [[ -e "$stage/lib/$need" || -e "$stage/lib-fallback/$need" || "$need" =~ $system_re ]]; then continue; fi
    echo "error: $(basename "$f") needs $need, which is neither bundled nor provided by the host" >&2
    missing=1
  done
done
(( missing == 0 )) || exit 1

cp bench/gpu/attention_torch.py "$stage/share/" 2>/dev/null || echo "note: bench/gpu/attention_torch.py absent"
# The GPT-2 step benchmark (gpu-check's gpt2-bench phase): the runner, the torch.compile
# side, and the reference model it imports (found beside it).
for f in bench/gpu/run_gpt2_step_bench.sh bench/gpu/gpt2_step_torch.py tests/torch_ref/gpt_reference.py; do
  cp "$f" "$stage/share/" 2>/dev/null || echo "note: $f absent"
done

cublaslt_soname=$(objdump -p "$stage/bin/colossus_cuda_test" 2>/dev/null | awk '/NEEDED/ && /libcublasLt/ {print $2}')
glibcxx_needed=$(for f in "$stage"/bin/* "$stage"/lib/*; do objdump -T "$f" 2>/dev/null; done |
  grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -n1)
{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- kernels bench tests runtime examples || echo ' (+ uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "build_dir: $build"
  echo "build_type: $(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")"
  echo "cuda_architectures: $(grep -o 'arch=compute_[0-9a-z]*,code=\[[^]]*\]' "$build/build.ninja" | sort -u | paste -sd' ')"
  echo "nvcc: $(/usr/local/cuda/bin/nvcc --version | sed -n 's/^Cuda compilation tools, //p')"
  echo "source_dir: $repo"
  echo "host_must_provide: libcuda.so.1 ${cublaslt_soname:-libcublasLt.so.13} libnccl.so.2 (NCCL 2.18+, for colossus_comm_nccl_test and colossus-bench)"
  echo "glibcxx_needed: ${glibcxx_needed:-none}"
  echo "programs: ${build_targets[*]}"
} >"$stage/MANIFEST"

mkdir -p .gpu-bundle
out=.gpu-bundle/colossus-gpu-bundle.tar.xz
tar -C "$stage" -cf - . | xz -T0 -9 >"$out.tmp"
mv "$out.tmp" "$out"
echo
cat "$stage/MANIFEST"
echo
du -sh "$stage"/bin "$stage"/lib "$stage"/lib-fallback | sed 's/^/unpacked: /'
echo "bundle: $out, $(stat -c %s "$out") bytes ($(du -h "$out" | cut -f1))"
