#!/usr/bin/env bash
# Installs every build and test dependency of Colossus from Debian's packages.
# Idempotent: a machine that already has them all runs no apt command at all.
# The CUDA toolkit (nvcc, cuBLAS, NCCL) is expected under /usr/local/cuda already;
# it is not a Debian package here (see third_party/README.md).
set -euo pipefail

packages=(
  cmake ninja-build ccache g++ pkg-config
  libabsl-dev            # Status/StatusOr, string formatting, flat maps
  libgtest-dev libgmock-dev
  libopenblas-openmp-dev # CPU matmuls (sgemm/dgemm); the OpenMP build shares our thread pool
  libyaml-cpp-dev        # training configs (and the cluster manifest later)
  libcli11-dev           # command-line flags of every tool
  nlohmann-json3-dev     # safetensors headers, JSON-lines metrics
  libgloo-dev            # the CPU communicator (comm/): collectives over TCP
  libxxhash-dev          # xxh64 checksums of the coordinator's journal records
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc  # the control plane
  libsentencepiece-dev   # optional BPE tokenizer in colossus-data
  python3-torch python3-numpy  # the independent reference in tests and benchmarks
  openssh-server slurm-wlm munge iproute2  # colossus-launch's SSH, Slurm and network-namespace tests
  python3-venv           # .venv-hf below (colossus-export's transformers test)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- .venv-hf: Hugging Face transformers for colossus-export's test (label torch) ----
# Debian's torch imports only under /usr/bin/python3 and Debian has no transformers, so a
# venv that sees Debian's site-packages (torch, numpy) gets transformers from PyPI.
# Pinned: transformers 4.30.2 (mid-2023) still supports torch 1.13.
# Idempotent: nothing runs when the venv already imports both packages.
hf_venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-hf"
if ! "$hf_venv/bin/python" -c "import transformers, safetensors" >/dev/null 2>&1; then
  echo "setup: creating $hf_venv (transformers==4.30.2, safetensors==0.3.1)"
  /usr/bin/python3 -m venv --system-site-packages "$hf_venv"
  "$hf_venv/bin/python" -m pip install -q --disable-pip-version-check \
    transformers==4.30.2 safetensors==0.3.1
fi
# ---- end .venv-hf ------------------------------------------------------------------------

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: the CUDA toolkit (nvcc) is required at build time and was not found in /usr/local/cuda" >&2
  exit 1
fi
echo "setup: all dependencies present"
