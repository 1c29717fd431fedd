#!/usr/bin/env bash
# The GPU check (issue 3's "one command"): on a GPU host, from the bundle that
# scripts/gpu-bundle.sh built on a build machine, records the hardware and software
# (GPU, driver, CUDA, NCCL, clocks, power limit), runs every GPU test binary,
# compute-sanitizer (memcheck, racecheck) over the CUDA kernel tests, and the kernel
# benchmarks, and writes one report, markdown and JSON.
#
# The GPU host needs: bash, python3, nvidia-smi, the driver, and CUDA 13's
# libcublasLt.so.13 (a CUDA 13 toolkit or the nvidia-cublas wheel); compute-sanitizer
# for the sanitizer phase; PyTorch with CUDA for the attention comparison. None of our
# Debian packages: the bundle carries them.
#
# On this workplace's device machine, from the build machine:
#   scripts/gpu-bundle.sh                                   # here: build + pack (~10 MB)
#   run(command="scripts/gpu-check.sh", carry=[".gpu-bundle"], timeout_s=600)
#   then commit $OUT/gpu-report.md as docs/gpu-report.md and gpu-report.json beside it.
# One call must end within 10 minutes, so the script keeps a budget (GPU_CHECK_BUDGET_S,
# default 560 s): each step gets at most what is left, and steps that no longer fit are
# recorded as skipped. Phases can also be run in separate calls, e.g.
#   run(command="scripts/gpu-check.sh info tests bench", carry=[".gpu-bundle"])
#   run(command="scripts/gpu-check.sh info sanitizer other-tests", carry=[".gpu-bundle"])
# each call writing a report of the phases it ran.
#
# Phases (default: all, in this order): info, tests (the gpu-labelled binaries),
# bench, sanitizer, other-tests (the other test binaries: the CPU reference, the runtime,
# whose device tests take the GPU when there is one, and comm), gpt2-bench (GPT-2 124M,
# B16 T1024, one training step, ours against torch.compile, with MFU:
# bench/gpu/run_gpt2_step_bench.sh; last, so a full run within one call may find no
# time left for it: then run `scripts/gpu-check.sh info gpt2-bench` on its own).
#
# Outputs, in $OUT (default ./gpu-check-out): gpu-report.md, gpu-report.json and
# gpu-check-logs.tar.gz (every log and gtest JSON). The report is rewritten after every
# phase, so a run cut short still reports what it finished.
# The gpt2-bench phase also profiles 3 of our steps op by op (colossus-cpu-bench
# --profile-steps) and reports the non-GEMM share of the step's GPU time.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
OUT=${OUT:-$repo/gpu-check-out}
budget=${GPU_CHECK_BUDGET_S:-560}
bundle_archive=${GPU_BUNDLE:-$repo/.gpu-bundle/colossus-gpu-bundle.tar.xz}
mkdir -p "$OUT"
logs=$(mktemp -d /tmp/gpu-check-logs.XXXXXX)
B=$(mktemp -d /tmp/colossus-bundle.XXXXXX)
start=$SECONDS

phases=("$@")
[[ ${#phases[@]} -gt 0 ]] || phases=(info tests bench sanitizer other-tests gpt2-bench)

log() { echo "[gpu-check $(( SECONDS - start ))s] $*" | tee -a "$logs/gpu-check.log"; }
left() { echo $(( budget - (SECONDS - start) )); }
# step NAME SECONDS CMD...: runs CMD with at most SECONDS (or what is left of the budget),
# output to $logs/NAME.log; records NAME's exit status (124: timed out; "skipped").
step() {
  local name=$1 limit=$2
  shift 2
  local remaining
  remaining=$(left)
  if (( remaining < 15 )); then
    log "skip $name: out of time"
    echo "skipped" >"$logs/$name.status"
    return 0
  fi
  (( limit > remaining )) && limit=$remaining
  log "run $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  echo "$rc" >"$logs/$name.status"
  echo "$(( SECONDS - t0 ))" >"$logs/$name.seconds"
  log "  $name: exit $rc after $(( SECONDS - t0 ))s"
  return 0
}

report() {
  tar -C "$logs" -czf "$OUT/gpu-check-logs.tar.gz" . 2>/dev/null
  python3 - "$logs" "$OUT" <<'PY' || log "report rendering failed"
import json, os, re, sys, glob, datetime
logs, out = sys.argv[1], sys.argv[2]

def read(name, default=""):
    p = os.path.join(logs, name)
    return open(p, errors="replace").read() if os.path.exists(p) else default

def status(name):
    s = read(name + ".status").strip()
    return None if s == "" else s

report = {"generated_utc": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
          "manifest": {}, "gpu": {}, "software": {}, "tests": [], "sanitizer": [],
          "kernel_bench": None, "attention_bench": None, "gpt2_step_bench": None, "notes": []}
for line in read("MANIFEST").splitlines():
    if ": " in line:
        k, v = line.split(": ", 1)
        report["manifest"][k] = v
q = read("nvidia-smi-query.csv").strip().splitlines()
if len(q) >= 2:
    keys = [k.strip() for k in q[0].split(",")]
    vals = [v.strip() for v in q[1].split(",")]
    report["gpu"] = dict(zip(keys, vals))
for line in read("versions.txt").splitlines():
    if ": " in line:
        k, v = line.split(": ", 1)
        report["software"][k] = v

# gtest JSON per binary (tests and other-tests phases).
for path in sorted(glob.glob(os.path.join(logs, "test-*.json"))):
    name = os.path.basename(path)[5:-5]
    entry = {"binary": name, "exit": status("test-" + name), "passed": 0, "failed": 0,
             "skipped": 0, "failures": []}
    try:
        data = json.load(open(path))
        for suite in data.get("testsuites", []):
            for t in suite.get("testsuite", []):
                full = suite["name"] + "." + t["name"]
                if t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
                    entry["skipped"] += 1
                elif t.get("failures"):
                    entry["failed"] += 1
                    msg = t["failures"][0].get("failure", "")[:600]
                    entry["failures"].append({"test": full, "message": msg})
                else:
                    entry["passed"] += 1
    except Exception as e:  # a crash leaves no or partial JSON
        entry["error"] = "no gtest JSON (%s); see %s.log" % (e.__class__.__name__, "test-" + name)
    report["tests"].append(entry)
for path in sorted(glob.glob(os.path.join(logs, "test-*.status"))):
    name = os.path.basename(path)[5:-7]
    if not any(t["binary"] == name for t in report["tests"]):
        report["tests"].append({"binary": name, "exit": status("test-" + name),
                                "error": "no gtest JSON; see test-%s.log" % name})

for tool in ("memcheck", "racecheck"):
    st = status("sanitizer-" + tool)
    if st is None:
        continue
    text = read("sanitizer-" + tool + ".log")
    m = re.search(r"ERROR SUMMARY: (\d+) error", text)
    report["sanitizer"].append({"tool": tool, "exit": st,
                                "errors": int(m.group(1)) if m else None,
                                "summary": (m.group(0) if m else text.strip()[-400:])})

kb = os.path.join(logs, "kernel-bench.json")
if os.path.exists(kb):
    try:
        report["kernel_bench"] = json.load(open(kb))
    except Exception as e:
        report["kernel_bench"] = {"error": str(e)}
if report["kernel_bench"] is None and status("kernel-bench") not in (None, "0"):
    report["kernel_bench"] = {"error": "exit %s: %s" % (status("kernel-bench"),
                                                        read("kernel-bench.log").strip()[-1500:])}
if status("attention-bench") is not None:
    report["attention_bench"] = {"exit": status("attention-bench"),
                                 "output": read("attention-bench.log")[-6000:]}
gb = os.path.join(logs, "gpt2-step-bench.json")
if os.path.exists(gb):
    try:
        report["gpt2_step_bench"] = json.load(open(gb))
    except Exception as e:
        report["gpt2_step_bench"] = {"error": str(e)}
if status("gpt2-step-bench") is not None:
    if report["gpt2_step_bench"] is None:
        report["gpt2_step_bench"] = {}
    report["gpt2_step_bench"]["exit"] = status("gpt2-step-bench")
    report["gpt2_step_bench"]["output"] = read("gpt2-step-bench.log")[-4000:]
if not (report["gpt2_step_bench"] or {}).get("ours", {}).get("profile"):
    report["notes"].append("The non-GEMM share of a training step's GPU time (the gpt2-bench "
                           "phase's profile): not measured in this run.")

json.dump(report, open(os.path.join(out, "gpu-report.json"), "w"), indent=2)

# ---- markdown ----
g, s, m = report["gpu"], report["software"], report["manifest"]
md = ["# GPU report", "",
      "Generated %s by `scripts/gpu-check.sh` from the bundle of commit `%s` (%s, CUDA archs %s, %s)." % (
          report["generated_utc"], m.get("commit", "?"), m.get("build_type", "?"),
          m.get("cuda_architectures", "?"), m.get("nvcc", "?")), "",
      "## Hardware and software", "", "| | |", "| --- | --- |"]
for k, v in list(g.items()) + list(s.items()):
    md.append("| %s | %s |" % (k, v))
md += ["", "## Tests", "", "| binary | passed | failed | skipped | exit |", "| --- | --- | --- | --- | --- |"]
for t in report["tests"]:
    if "passed" in t:
        md.append("| %s | %d | %d | %d | %s |" % (t["binary"], t["passed"], t["failed"], t["skipped"], t["exit"]))
    else:
        md.append("| %s | - | - | - | %s (%s) |" % (t["binary"], t["exit"], t.get("error", "")))
for t in report["tests"]:
    for f in t.get("failures", []):
        md += ["", "**FAILED** `%s` (%s):" % (f["test"], t["binary"]), "", "```", f["message"], "```"]
if report["sanitizer"]:
    md += ["", "## compute-sanitizer over the CUDA kernel tests", "", "| tool | errors | exit |", "| --- | --- | --- |"]
    for r in report["sanitizer"]:
        md.append("| %s | %s | %s |" % (r["tool"], r["errors"], r["exit"]))
k = report["kernel_bench"]
if k and "results" in k:
    copy = k.get("copy_gbps", 0)
    md += ["", "## Kernel benchmarks", "",
           "Median of %s runs after %s warm-ups, CUDA events on the backend's stream, inputs rotated over "
           ">= 4x the L2 cache (%s bytes). Bandwidth counts the minimum bytes an op must move; the ceiling "
           "is the device-to-device copy, %.0f GB/s (read + write) in this run. Target for memory-bound "
           "kernels: >= 80%% of it." % (k.get("iters"), k.get("warmup"), k.get("l2_bytes"), copy), "",
           "| op | shape | median us | GB/s | of copy | TFLOP/s | target |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in k["results"]:
        if r["flops"] > 0:
            md.append("| %s | %s | %.1f | | | %.1f | |" % (r["name"], r["shape"], r["median_us"], r["tflops"]))
        else:
            share = r["share_of_copy"]
            target = "" if r["name"].startswith("copy") else ("met" if share >= 0.8 else "MISSED")
            md.append("| %s | %s | %.1f | %.0f | %.0f%% | | %s |" % (r["name"], r["shape"], r["median_us"], r["gbps"], 100 * share, target))
elif k:
    md += ["", "## Kernel benchmarks", "", "failed: %s" % k.get("error")]
if report["attention_bench"]:
    md += ["", "## Attention benchmark (ours vs PyTorch SDPA flash), exit %s" % report["attention_bench"]["exit"], "", "```",
           report["attention_bench"]["output"].strip(), "```"]
gs = report["gpt2_step_bench"]
if gs:
    md += ["", "## GPT-2 124M training step, ours vs torch.compile (exit %s)" % gs.get("exit"), ""]
    if "ours" in gs:
        md += ["%s, B%s T%s, bf16; %s. MFU = (6N + 6*L*C*T) FLOPs/token x tokens/s / peak dense bf16 "
               "(%s TFLOP/s). Targets: speed-up >= 1.1, MFU >= 45%%." % (
                   gs.get("config"), gs.get("B"), gs.get("T"), gs.get("backend"),
                   "%.0f" % (gs["peak_flops"] / 1e12) if gs.get("peak_flops") else "unknown"), "",
               "| impl | median ms | tokens/s | MFU |", "| --- | --- | --- | --- |"]
        for impl in ("ours", "ours_graph", "torch"):
            r = gs.get(impl)
            if r:
                md.append("| %s | %.1f | %.0f | %s |" % (impl, r["median_ms"], r["tokens_per_s"],
                                                       "%.1f%%" % (100 * r["mfu"]) if "mfu" in r else "-"))
        if "speedup_ours_over_torch" in gs:
            md += ["", "Speed-up ours / torch: **%.3f**" % gs["speedup_ours_over_torch"]]
        if "speedup_ours_graph_over_torch" in gs:
            md += ["", "Speed-up ours with CUDA graphs (`--graph`) / torch: **%.3f**" %
                   gs["speedup_ours_graph_over_torch"]]
        prof = gs["ours"].get("profile")
        if prof:
            n, span = prof["steps"], prof["span_ms"]
            md += ["", "Where our step's GPU time goes (%d profiled steps, CUDA events around every op; "
                   "target: non-GEMM kernels <= 25%% of the step): non-GEMM **%.1f%%** (%.1f%% without "
                   "attention), %s." % (n, 100 * prof["non_gemm_share"],
                                         100 * prof["non_gemm_share_excluding_attention"],
                                         "met" if prof["non_gemm_share"] <= 0.25 else "MISSED"), "",
                   "| op | category | calls/step | ms/step | % of step |", "| --- | --- | --- | --- | --- |"]
            for o in prof["ops"]:
                md.append("| %s | %s | %.1f | %.3f | %.1f%% |" % (o["op"], o["category"], o["calls"] / n,
                                                                  o["total_ms"] / n, 100 * o["total_ms"] / span))
            md.append("| (between ops) | | | %.3f | %.1f%% |" % (prof["between_ops_ms"] / n,
                                                               100 * prof["between_ops_ms"] / span))
    md += ["", "```", gs.get("output", "").strip()[-3000:], "```"]
md += ["", "## Not measured yet", ""] + ["- " + n for n in report["notes"]]
skipped = [os.path.basename(p)[:-7] for p in glob.glob(os.path.join(logs, "*.status")) if read(os.path.basename(p)).strip() == "skipped"]
if skipped:
    md += ["- out of time budget in this run: " + ", ".join(sorted(skipped))]
open(os.path.join(out, "gpu-report.md"), "w").write("\n".join(md) + "\n")
PY
}

# ---- unpack the bundle and find what the host must provide ---------------------------------
if [[ ! -f "$bundle_archive" ]]; then
  echo "no bundle at $bundle_archive: run scripts/gpu-bundle.sh on a build machine and carry .gpu-bundle" >&2
  exit 2
fi
tar -xJf "$bundle_archive" -C "$B"
cp "$B/MANIFEST" "$logs/MANIFEST"
log "bundle: $(sed -n 's/^commit: //p' "$B/MANIFEST")"

cublas_dir=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia, os; [print(os.path.join(p, s, "lib")) for p in nvidia.__path__ for s in os.listdir(p)]' 2>/dev/null); do
  if [[ -e "$d/libcublasLt.so.13" ]]; then cublas_dir=$d; break; fi
done
[[ -n "$cublas_dir" ]] || cublas_dir=$(dirname "$(ldconfig -p | awk '/libcublasLt\.so\.13/ {print $NF; exit}')" 2>/dev/null)
# NCCL (the comm tests and colossus-bench): the host's, wherever a toolkit, the system or
# the nvidia-nccl wheel put it.
nccl_dir=""
for d in /usr/local/cuda/lib /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu \
         $(python3 -c 'import nvidia, os; [print(os.path.join(p, "nccl", "lib")) for p in nvidia.__path__]' 2>/dev/null); do
  if [[ -e "$d/libnccl.so.2" ]]; then nccl_dir=$d; break; fi
done
export LD_LIBRARY_PATH="$B/lib${cublas_dir:+:$cublas_dir}${nccl_dir:+:$nccl_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The host's libstdc++ may be older than the build machine's.
if ! "$B/bin/colossus_cuda_test" --gtest_list_tests >/dev/null 2>"$logs/loader-check.log"; then
  if grep -q "GLIBCXX\|CXXABI\|libstdc" "$logs/loader-check.log"; then
    export LD_LIBRARY_PATH="$B/lib:$B/lib-fallback${cublas_dir:+:$cublas_dir}${nccl_dir:+:$nccl_dir}"
    log "using the bundle's libstdc++ (the host's is older)"
  fi
fi
log "libcublasLt from: ${cublas_dir:-NOT FOUND}; libnccl.so.2 from: ${nccl_dir:-NOT FOUND (comm tests and colossus-bench cannot load)}"
# Tests read data files from the source tree at the path they were built in; point that
# path at this checkout when it does not exist here.
src=$(sed -n 's/^source_dir: //p' "$B/MANIFEST")
if [[ -n "$src" && ! -e "$src" ]]; then mkdir -p "$(dirname "$src")" && ln -s "$repo" "$src" && log "linked $src -> $repo"; fi

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)

for phase in "${phases[@]}"; do
  case "$phase" in
    info)
      nvidia-smi >"$logs/nvidia-smi.txt" 2>&1
      nvidia-smi --query-gpu=name,driver_version,pci.bus_id,memory.total,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,power.max_limit,power.draw,temperature.gpu,persistence_mode,compute_mode,clocks_throttle_reasons.active \
        --format=csv >"$logs/nvidia-smi-query.csv" 2>&1
      {
        echo "kernel: $(uname -r)"
        echo "host: $(hostname), $(nproc) CPUs"
        echo "nvcc: $(nvcc --version 2>/dev/null | sed -n 's/^Cuda compilation tools, //p')"
        echo "libcublasLt: ${cublas_dir:-not found}/libcublasLt.so.13"
        python3 - <<'PY' 2>/dev/null
import torch
print("torch: %s (CUDA %s)" % (torch.__version__, torch.version.cuda))
try:
    v = torch.cuda.nccl.version()
    print("nccl (torch's): %s" % (".".join(map(str, v)) if isinstance(v, tuple) else v))
except Exception as e:
    print("nccl (torch's): unknown (%s)" % e)
PY
        nccl=$(ldconfig -p | awk '/libnccl\.so/ {print $NF; exit}')
        [[ -n "$nccl" ]] && echo "nccl (system): $(readlink -f "$nccl")"
        echo "compute-sanitizer: ${sanitizer:-not found}"
        echo "backend: $("$B/bin/colossus-gpu-kernel-bench" --describe 2>&1 | head -n1)"
      } >"$logs/versions.txt" 2>&1
      log "GPU: $(sed -n 2p "$logs/nvidia-smi-query.csv")"
      ;;
    tests)
      for exe in "$B"/bin/colossus_cuda_test "$B"/bin/colossus_cuda_train_test "$B"/bin/colossus_comm_nccl_test; do
        [[ -x "$exe" ]] || continue
        n=$(basename "$exe")
        step "test-$n" 300 "$exe" --gtest_output="json:$logs/test-$n.json"
      done
      # The whole model on the CUDA backend against float32 PyTorch (the host's python3,
      # which must import torch; the script is found through the source-dir link above).
      if [[ -x "$B/bin/colossus_torch_ref_test" ]]; then
        step test-colossus_torch_ref_test-cuda 240 env COLOSSUS_TORCH_PYTHON="$(command -v python3)" \
          "$B/bin/colossus_torch_ref_test" --gtest_filter='ModelVsTorchCudaTest.*' \
          --gtest_output="json:$logs/test-colossus_torch_ref_test-cuda.json"
      fi
      ;;
    other-tests)
      for exe in "$B"/bin/*_test; do
        n=$(basename "$exe")
        # The torch reference's CPU cases run in CI; its CUDA cases ran in `tests`.
        [[ "$n" == colossus_cuda_test || "$n" == colossus_cuda_train_test || "$n" == colossus_comm_nccl_test ||
           "$n" == colossus_torch_ref_test ]] && continue
        step "test-$n" 240 "$exe" --gtest_output="json:$logs/test-$n.json"
      done
      ;;
    bench)
      step kernel-bench 150 "$B/bin/colossus-gpu-kernel-bench" --json "$logs/kernel-bench.json"
      if [[ -x "$B/bin/colossus-bench" ]]; then
        # One rank per GPU (one GPU: algbw only, busbw is 0 by definition).
        ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
        step comm-bench 120 "$B/bin/colossus-bench" --backend nccl --nproc "${ngpu:-1}" \
          --op-name all_reduce -b 8 -e 256M -f 4 -n 20 -w 5 -c 1 --json "$logs/comm-bench.json"
      fi
      if [[ -x "$B/bin/colossus-attention-bench" ]]; then
        step attention-bench 150 "$B/bin/colossus-attention-bench" --python python3 \
          --torch-script "$B/share/attention_torch.py"
      fi
      ;;
    sanitizer)
      if [[ -z "$sanitizer" ]]; then
        log "no compute-sanitizer on this host"
      else
        # The op tests and the small attention shapes; death tests re-run the binary and
        # the long attention shapes would take minutes under instrumentation.
        filter='Paths/CudaOpsTest.*:CudaBackendTest.*:*CudaAttentionTest*T17*:*CudaAttentionTest*T64*:*CudaAttentionTest*T100*'
        # API errors are not reported: a test provokes an out-of-memory on purpose.
        step sanitizer-memcheck 200 "$sanitizer" --tool memcheck --report-api-errors no --error-exitcode 1 \
          "$B/bin/colossus_cuda_test" --gtest_filter="$filter"
        step sanitizer-racecheck 150 "$sanitizer" --tool racecheck --report-api-errors no --error-exitcode 1 \
          "$B/bin/colossus_cuda_test" --gtest_filter="$filter"
      fi
      ;;
    gpt2-bench)
      # Ours (colossus-cpu-bench --device cuda) and torch.compile, interleaved, 2 rounds
      # each; torch's first step compiles (a minute or more without a warm cache).
      step gpt2-step-bench 420 env COLOSSUS_BENCH="$B/bin/colossus-cpu-bench" \
        TORCH_STEP="$B/share/gpt2_step_torch.py" bash "$B/share/run_gpt2_step_bench.sh" \
        -r 2 -w 5 -s 20 -o "$logs/gpt2-step-bench.json"
      ;;
    *)
      echo "unknown phase '$phase' (info, tests, bench, sanitizer, other-tests, gpt2-bench)" >&2
      exit 2
      ;;
  esac
  report
done
log "done in $(( SECONDS - start ))s; report in $OUT"
cat "$OUT/gpu-report.md" 2>/dev/null | head -n 80
rm -rf "$B"
