#!/usr/bin/env bash
# One GPT-2 124M training step (T = 1024, bf16) on one GPU: Colossus's CUDA backend
# against PyTorch (torch.compile, bf16 autocast, SDPA, fused AdamW:
# bench/gpu/gpt2_step_torch.py) with the same weights, batch and optimizer settings.
#
#   bench/gpu/run_gpt2_step_bench.sh [-b BUILD_DIR] [-B BATCH] [-r ROUNDS] [-w WARMUP]
#                                    [-s STEPS] [-o RESULT.json]
#
# Runs ours, torch, ours, torch, ... (ROUNDS of each, interleaved so that clocks and
# thermals hurt both alike), pools the timed steps of each side and prints the median
# step time, tokens/s, MFU of both (the formula in runtime/include/colossus/mfu.h, the peak
# ours reports for this GPU) and the speed-up ours over torch (issue 3's target: >= 1.1,
# and MFU >= 45%), and ours again with each step launched as CUDA graphs (--graph). Each
# step of every side ends with a device synchronize. Ours's last
# round then profiles 3 more steps op by op (--profile-steps) and the summary prints the
# share of the step's GPU time in non-GEMM kernels (target: at most 25%).
#
# Environment: COLOSSUS_BENCH (default BUILD_DIR/bench/colossus-cpu-bench, the step
# benchmark, run with --device cuda), COLOSSUS_TORCH_PYTHON (default python3; must import
# torch with CUDA), TORCH_STEP (default gpt2_step_torch.py beside this script).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${here}/../../build/release"
batch=16
seq=1024
rounds=2
warmup=5
steps=20
result=""
while getopts "b:B:r:w:s:o:h" flag; do
  case "${flag}" in
    b) build="${OPTARG}" ;;
    B) batch="${OPTARG}" ;;
    r) rounds="${OPTARG}" ;;
    w) warmup="${OPTARG}" ;;
    s) steps="${OPTARG}" ;;
    o) result="${OPTARG}" ;;
    *) sed -n '2,17p' "$0"; exit 2 ;;
  esac
done

bench="${COLOSSUS_BENCH:-${build}/bench/colossus-cpu-bench}"
python="${COLOSSUS_TORCH_PYTHON:-python3}"
torch_step="${TORCH_STEP:-${here}/gpt2_step_torch.py}"
[[ -x "${bench}" ]] || { echo "no ${bench}: build the colossus-cpu-bench target (or set COLOSSUS_BENCH)" >&2; exit 1; }
"${python}" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
  echo "warning: ${python} has no torch with CUDA: timing ours only" >&2

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

ours=(--preset gpt2-124m --device cuda --batch "${batch}" --seq "${seq}")
# The inputs (weights, batch) come from ours; both sides then time the same problem.
"${bench}" "${ours[@]}" --warmup 0 --steps 0 --save-inputs "${work}" > /dev/null
have_torch=1
for r in $(seq 1 "${rounds}"); do
  echo "== round ${r}: colossus" >&2
  # The last round also profiles 3 steps op by op after its timed ones (not among them):
  # the non-GEMM share of a step (issue 3's target: at most 25% of the step's GPU time).
  profile=()
  (( r == rounds )) && profile=(--profile-steps 3)
  "${bench}" "${ours[@]}" --warmup "${warmup}" --steps "${steps}" "${profile[@]}" \
    --json "${work}/ours.${r}.json" | grep -v '^JSON' >&2
  # The same steps launched as two CUDA graphs each (graph_step.h).
  echo "== round ${r}: colossus, CUDA graphs" >&2
  "${bench}" "${ours[@]}" --graph --warmup "${warmup}" --steps "${steps}" \
    --json "${work}/ours_graph.${r}.json" | grep -v '^JSON' >&2 ||
    echo "colossus with CUDA graphs failed: see above" >&2
  if (( have_torch )); then
    echo "== round ${r}: torch" >&2
    if ! "${python}" "${torch_step}" --dir "${work}" --warmup "${warmup}" --steps "${steps}" \
        --json "${work}/torch.${r}.json" 2>"${work}/torch.${r}.err" | grep -v '^JSON' >&2; then
      tail -n 20 "${work}/torch.${r}.err" >&2
      echo "torch failed: timing ours only" >&2
      have_torch=0
    fi
  fi
done

"${python}" - "${work}" "${result}" <<'EOF'
import glob, json, statistics, sys

work, result_path = sys.argv[1], sys.argv[2]
out = {}
impls = ("ours", "ours_graph", "torch")
for impl in impls:
    runs = [json.load(open(p)) for p in sorted(glob.glob(f"{work}/{impl}.*.json"))]
    if not runs:
        continue
    times = [t for r in runs for t in r["times_ms"]]
    med = statistics.median(times)
    out[impl] = {"median_ms": med, "min_ms": min(times), "steps": len(times),
                 "tokens_per_s": 1000.0 * runs[0]["B"] * runs[0]["T"] / med,
                 "first_loss": runs[0]["first_loss"],
                 "round_medians_ms": [r["median_ms"] for r in runs]}
    out.setdefault("B", runs[0]["B"])
    out.setdefault("T", runs[0]["T"])
    if impl.startswith("ours"):
        out["config"] = runs[0]["config"]
        out["backend"] = runs[0]["backend"]
        out["flops_per_token"] = runs[0]["flops_per_token"]
        out["peak_flops"] = runs[0].get("peak_flops")
        if "profile" in runs[-1]:
            out[impl]["profile"] = runs[-1]["profile"]
    else:
        out["torch_version"] = runs[0]["torch"]
        out["gpu"] = runs[0]["gpu"]
for impl in impls:
    if impl in out and out.get("peak_flops"):
        out[impl]["mfu"] = out["flops_per_token"] * out[impl]["tokens_per_s"] / out["peak_flops"]
if "ours" in out and "torch" in out:
    out["speedup_ours_over_torch"] = out["ours"]["tokens_per_s"] / out["torch"]["tokens_per_s"]
if "ours_graph" in out and "torch" in out:
    out["speedup_ours_graph_over_torch"] = (out["ours_graph"]["tokens_per_s"] /
                                            out["torch"]["tokens_per_s"])

print(f"GPT-2 step (forward + backward + clip + AdamW), {out.get('config')} B{out.get('B')} "
      f"T{out.get('T')}, bf16; {out.get('backend')}")
print(f"{'impl':>10} {'median ms':>10} {'min ms':>8} {'tokens/s':>10} {'MFU':>7} {'first loss':>11}"
      f"  round medians (ms)")
for impl in impls:
    if impl not in out:
        print(f"{impl:>10}  not measured")
        continue
    r = out[impl]
    mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
    print(f"{impl:>10} {r['median_ms']:>10.1f} {r['min_ms']:>8.1f} {r['tokens_per_s']:>10.0f} "
          f"{mfu:>7} {r['first_loss']:>11.6f}  " + " ".join(f"{m:.1f}" for m in r["round_medians_ms"]))
if out.get("peak_flops"):
    print(f"MFU = (6N + 6*L*C*T) * tokens/s / peak: {out['flops_per_token'] / 1e9:.4g} GFLOPs/token, "
          f"peak {out['peak_flops'] / 1e12:.0f} TFLOP/s (dense bf16)")
else:
    print("MFU: unknown peak for this GPU (see runtime/include/colossus/mfu.h)")
if "speedup_ours_over_torch" in out:
    s = out["speedup_ours_over_torch"]
    print(f"speed-up ours / torch (tokens/s): {s:.3f} (target >= 1.1: {'met' if s >= 1.1 else 'MISSED'})")
if "speedup_ours_graph_over_torch" in out:
    print(f"speed-up ours with CUDA graphs / torch: {out['speedup_ours_graph_over_torch']:.3f}")
if "ours" in out and "mfu" in out["ours"]:
    m = out["ours"]["mfu"]
    print(f"MFU ours: {100 * m:.1f}% (target >= 45%: {'met' if m >= 0.45 else 'MISSED'})")
prof = out.get("ours", {}).get("profile")
if prof:
    n = prof["steps"]
    cat = prof["category_ms"]
    span = prof["span_ms"]
    print(f"profile of {n} steps (CUDA events around every op): {span / n:.1f} ms per step; "
          + ", ".join(f"{k} {100 * v / span:.1f}%" for k, v in cat.items())
          + f", between ops {100 * prof['between_ops_ms'] / span:.1f}%")
    share = prof["non_gemm_share"]
    print(f"non-GEMM kernels: {100 * share:.1f}% of the step "
          f"({100 * prof['non_gemm_share_excluding_attention']:.1f}% without attention; "
          f"target <= 25%: {'met' if share <= 0.25 else 'MISSED'})")
print("JSON " + json.dumps(out))
if result_path:
    with open(result_path, "w") as f:
        json.dump(out, f, indent=1)
EOF
