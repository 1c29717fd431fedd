#!/usr/bin/env bash
# train_gpt as a data-parallel job, launched the way a user would: launch_local.sh sets
# the torchrun environment, rank 0 serves the store. Checks that 2 ranks (plain and
# ZeRO-1) log the same losses as one process with the same global batch, that only rank
# 0 writes outputs, and that a bad environment is a clear error.
#   train_gpt_dp_test.sh PATH/TO/train_gpt PATH/TO/colossus-data SOURCE_DIR
set -u
TRAIN=$(realpath "$1")
DATA=$(realpath "$2")
SRC=$(realpath "$3")
LAUNCH="$SRC/examples/train_gpt/launch_local.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/train_gpt_dp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }

head -c 100000 "$SRC/examples/data/kjv-pentateuch.txt" > text.txt
"$DATA" encode --tokenizer byte --output ds --val-fraction 0.1 text.txt >/dev/null || fail "encode"

ARGS=(--preset tiny --train 'ds/train_*.bin' --steps 6 --threads 1 --global-batch 8
      --set training.batch_size=2 --set training.seq_len=32 --set sample.tokens=4
      --set optimizer.warmup_steps=2)

"$TRAIN" "${ARGS[@]}" --out one >one.txt 2>&1 || { cat one.txt; fail "one process"; }
bash "$LAUNCH" -n 2 --logs logs2 -- "$TRAIN" "${ARGS[@]}" --out two >two.txt 2>&1 \
  || { cat two.txt logs2/*; fail "2 ranks"; }
bash "$LAUNCH" -n 2 --logs logsz -- "$TRAIN" "${ARGS[@]}" --zero --out zero >zero.txt 2>&1 \
  || { cat zero.txt logsz/*; fail "2 ranks, ZeRO-1"; }

grep -q "data parallel over 2 ranks" two.txt || { cat two.txt; fail "rank 0 did not report the group"; }
grep -q "ZeRO-1" zero.txt || { cat zero.txt; fail "ZeRO-1 not reported"; }
grep -q "=== done" two.txt || fail "rank 0 printed no summary"
! grep -q "=== done" logs2/rank1.log || fail "rank 1 printed a summary"
[ -f two/model.safetensors ] || fail "no weights from rank 0"

compare() {  # compare FILE_A FILE_B TOLERANCE: per-step losses within a relative tolerance
  /usr/bin/python3 - "$@" <<'PY' || exit 1
import json, sys
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
la = [json.loads(l)["loss"] for l in open(a) if '"loss"' in l]
lb = [json.loads(l)["loss"] for l in open(b) if '"loss"' in l]
assert len(la) == 6 and len(lb) == 6, (len(la), len(lb))
worst = max(abs(x - y) / abs(y) for x, y in zip(la, lb))
print(f"{a} vs {b}: worst relative loss difference {worst:.2e} (tolerance {tol:g})")
sys.exit(0 if worst <= tol else 1)
PY
}
compare two/metrics.jsonl one/metrics.jsonl 1e-5 || fail "2 ranks differ from 1 process"
compare zero/metrics.jsonl two/metrics.jsonl 1e-6 || fail "ZeRO-1 differs from plain DP"

# A half-set environment is refused, naming the variable (exit 1, before any training).
WORLD_SIZE=2 "$TRAIN" "${ARGS[@]}" --out bad >bad.txt 2>&1
rc=$?
[ "$rc" -eq 1 ] || { cat bad.txt; fail "bad env: exit $rc, want 1"; }
grep -q "WORLD_SIZE=2 is set but RANK is not" bad.txt || { cat bad.txt; fail "bad env message"; }
echo "PASS"
