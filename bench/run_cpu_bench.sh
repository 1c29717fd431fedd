#!/usr/bin/env bash
# One training step of the "bench" preset, Colossus's CPU backend against PyTorch eager,
# with the same config, weights, batch, BLAS (the OpenMP build of OpenBLAS) and threads.
#
#   bench/run_cpu_bench.sh [-b BUILD_DIR] [-t "1 2"] [-r ROUNDS] [-w WARMUP] [-s STEPS]
#                          [-o RESULT.json]
#
# For each thread count it runs ours, torch, ours, torch, ... (ROUNDS of each,
# interleaved so that a noisy machine hurts both alike), pools the timed steps of each
# side, and prints the median and minimum step time, tokens/s and the ratio ours/torch
# (below 1: ours is faster). Needs a built colossus-cpu-bench and a python that can
# import torch (COLOSSUS_TORCH_PYTHON, default /usr/bin/python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${here}/../build/release"
threads="1 2"
rounds=2
warmup=3
steps=10
result=""
while getopts "b:t:r:w:s:o:h" flag; do
  case "${flag}" in
    b) build="${OPTARG}" ;;
    t) threads="${OPTARG}" ;;
    r) rounds="${OPTARG}" ;;
    w) warmup="${OPTARG}" ;;
    s) steps="${OPTARG}" ;;
    o) result="${OPTARG}" ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done

bench="${build}/bench/colossus-cpu-bench"
python="${COLOSSUS_TORCH_PYTHON:-/usr/bin/python3}"
openblas_omp="/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)/openblas-openmp"
[[ -x "${bench}" ]] || { echo "no ${bench}: build the colossus-cpu-bench target first" >&2; exit 1; }
"${python}" -c 'import torch' 2>/dev/null ||
  { echo "${python} cannot import torch: apt-get install python3-torch" >&2; exit 1; }
[[ -e "${openblas_omp}/libblas.so.3" ]] ||
  { echo "no ${openblas_omp}/libblas.so.3: apt-get install libopenblas0-openmp" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

for n in ${threads}; do
  mkdir -p "${work}/t${n}"
  # The machine's load before each thread count: on shared machines, read figures with it.
  cut -d' ' -f1-3 /proc/loadavg > "${work}/t${n}/loadavg"
  # The inputs (weights, batch) come from ours; both sides then time the same problem.
  OMP_NUM_THREADS="${n}" "${bench}" --threads "${n}" --warmup 0 --steps 0 \
    --save-inputs "${work}/t${n}" > /dev/null
  for r in $(seq 1 "${rounds}"); do
    echo "== ${n} thread(s), round ${r}: colossus" >&2
    OMP_NUM_THREADS="${n}" "${bench}" --threads "${n}" --warmup "${warmup}" --steps "${steps}" \
      --json "${work}/t${n}/ours.${r}.json" | grep -v '^JSON' >&2
    echo "== ${n} thread(s), round ${r}: torch" >&2
    LD_LIBRARY_PATH="${openblas_omp}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}" \
      OMP_NUM_THREADS="${n}" "${python}" "${here}/torch_step.py" --dir "${work}/t${n}" \
      --threads "${n}" --warmup "${warmup}" --steps "${steps}" \
      --json "${work}/t${n}/torch.${r}.json" | grep -v '^JSON' >&2
  done
done

"${python}" - "${work}" "${threads}" "${result}" <<'EOF'
import glob, json, os, statistics, sys

work, threads, result_path = sys.argv[1], sys.argv[2].split(), sys.argv[3]
rows = []
for n in threads:
    row = {"threads": int(n)}
    for impl in ("ours", "torch"):
        runs = [json.load(open(p)) for p in sorted(glob.glob(f"{work}/t{n}/{impl}.*.json"))]
        times = [t for r in runs for t in r["times_ms"]]
        med = statistics.median(times)
        row[impl] = {"median_ms": med, "min_ms": min(times), "steps": len(times),
                     "tokens_per_s": 1000.0 * runs[0]["B"] * runs[0]["T"] / med,
                     "first_loss": runs[0]["first_loss"], "blas": runs[0]["blas"],
                     "round_medians_ms": [r["median_ms"] for r in runs]}
        for phase in ("forward_ms", "backward_ms", "optimizer_ms"):
            row[impl][phase] = statistics.median(r[phase] for r in runs)
        row["config"] = runs[0].get("config", row.get("config"))
        row["B"], row["T"] = runs[0]["B"], runs[0]["T"]
    row["loadavg_before"] = open(f"{work}/t{n}/loadavg").read().strip()
    row["ratio_ours_over_torch"] = row["ours"]["median_ms"] / row["torch"]["median_ms"]
    rows.append(row)

print(f"one training step (forward + backward + AdamW), {rows[0]['config']} "
      f"B{rows[0]['B']} T{rows[0]['T']}")
print(f"{'threads':>7} {'impl':>8} {'median ms':>10} {'min ms':>8} {'tokens/s':>9} "
      f"{'first loss':>11}  round medians (ms)")
for row in rows:
    for impl in ("ours", "torch"):
        r = row[impl]
        print(f"{row['threads']:>7} {impl:>8} {r['median_ms']:>10.1f} {r['min_ms']:>8.1f} "
              f"{r['tokens_per_s']:>9.0f} {r['first_loss']:>11.6f}  "
              + " ".join(f"{m:.1f}" for m in r["round_medians_ms"]))
    print(f"{row['threads']:>7} {'ratio':>8} {row['ratio_ours_over_torch']:>10.3f}   "
          f"(ours / torch, median step time; < 1 means ours is faster; "
          f"load average before: {row['loadavg_before']})")
print("phases, median of the rounds' medians (ms):")
for row in rows:
    for impl in ("ours", "torch"):
        r = row[impl]
        print(f"{row['threads']:>7} {impl:>8}  forward {r['forward_ms']:.1f}  backward "
              f"{r['backward_ms']:.1f}  optimizer {r['optimizer_ms']:.1f}")
for row in rows:
    for impl in ("ours", "torch"):
        print(f"blas {impl} ({row['threads']} threads): {', '.join(row[impl]['blas'])}")
print("JSON " + json.dumps(rows))
if result_path:
    with open(result_path, "w") as f:
        json.dump(rows, f, indent=1)
EOF
