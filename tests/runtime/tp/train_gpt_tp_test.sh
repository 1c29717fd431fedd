#!/usr/bin/env bash
# train_gpt with --tp, launched the way a user would (launch_local.sh, the torchrun
# environment): 2-way tensor parallel x 2-way data parallel on 4 processes, plain and
# with --zero, logs the same losses as one process with the same global batch, rank 0
# reports the layout and writes the outputs; with --checkpoint-dir, 3 steps and then the
# same command to 6 resume at step 3 with exactly the losses of a run without a stop,
# COMMIT.json records the layout, and colossus-export reads the checkpoint; impossible
# layouts are clear errors.
#   train_gpt_tp_test.sh PATH/TO/train_gpt PATH/TO/colossus-data SOURCE_DIR PATH/TO/colossus-export
set -u
TRAIN=$(realpath "$1")
DATA=$(realpath "$2")
SRC=$(realpath "$3")
EXPORT=$(realpath "$4")
LAUNCH="$SRC/examples/train_gpt/launch_local.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/train_gpt_tp.XXXXXX")
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }

head -c 100000 "$SRC/examples/data/kjv-pentateuch.txt" > text.txt
"$DATA" encode --tokenizer byte --output ds --val-fraction 0.1 text.txt >/dev/null || fail "encode"

BASE=(--preset tiny --train 'ds/train_*.bin' --val 'ds/val_*.bin' --threads 1
      --global-batch 8 --set training.batch_size=2 --set training.seq_len=32
      --set sample.tokens=4 --set eval.batches=2 --set optimizer.warmup_steps=2
      --set optimizer.total_steps=6)
ARGS=("${BASE[@]}" --steps 6)

"$TRAIN" "${ARGS[@]}" --out one >one.txt 2>&1 || { cat one.txt; fail "one process"; }
bash "$LAUNCH" -n 4 --logs logs4 -- "$TRAIN" "${ARGS[@]}" --tp 2 --out tp >tp.txt 2>&1 \
  || { cat tp.txt logs4/*; fail "4 ranks, --tp 2"; }
grep -q "tensor parallel 2 x data parallel 2" tp.txt || { cat tp.txt; fail "rank 0 did not report the layout"; }
[ -f tp/model.safetensors ] || fail "no weights from rank 0"

bash "$LAUNCH" -n 4 --logs logsz -- "$TRAIN" "${ARGS[@]}" --tp 2 --zero --out tpz >tpz.txt 2>&1 \
  || { cat tpz.txt logsz/*; fail "4 ranks, --tp 2 --zero"; }
grep -q "ZeRO-1: 1/2 of the shard's" tpz.txt || { cat tpz.txt; fail "rank 0 did not report ZeRO-1"; }

compare() {  # compare A B: losses and validation losses within 1e-5
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
def read(path, key):
    return [json.loads(l)[key] for l in open(path) if f'"{key}"' in l]
for key in ("loss", "val_loss"):
    a, b = read(sys.argv[1], key), read(sys.argv[2], key)
    assert len(a) == len(b) and a, (key, len(a), len(b))
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    print(f"{key}: worst relative difference {worst:.2e} over {len(a)} values (tolerance 1e-5)")
    if worst > 1e-5:
        sys.exit(1)
PY
}
compare one/metrics.jsonl tp/metrics.jsonl || fail "tp x dp differs from 1 process"
compare one/metrics.jsonl tpz/metrics.jsonl || fail "tp x dp with ZeRO-1 differs from 1 process"

# Checkpoints at tp 2 x dp 2: stop after 3 steps, run the same command to 6.
CK=(--tp 2 --checkpoint-dir ck --checkpoint-every 3)
bash "$LAUNCH" -n 4 --logs logsc1 -- "$TRAIN" "${BASE[@]}" "${CK[@]}" --steps 3 --out ck1 >ck1.txt 2>&1 \
  || { cat ck1.txt logsc1/*; fail "--tp 2 with checkpoints, first 3 steps"; }
grep -q '"tp": 2' ck/step-00000003/COMMIT.json || { cat ck/step-00000003/COMMIT.json; fail "layout not recorded"; }
bash "$LAUNCH" -n 4 --logs logsc2 -- "$TRAIN" "${BASE[@]}" "${CK[@]}" --steps 6 --out ck2 >ck2.txt 2>&1 \
  || { cat ck2.txt logsc2/*; fail "--tp 2 with checkpoints, resumed"; }
grep -q "resumed from step 3 " ck2.txt || { cat ck2.txt; fail "did not resume from step 3"; }
/usr/bin/python3 - tp/metrics.jsonl ck2/metrics.jsonl <<'PY' || fail "the resumed steps differ from the run without a stop"
import json, sys
def losses(path):
    return {j["step"]: j["loss"] for j in map(json.loads, open(path)) if "loss" in j}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(b) == [3, 4, 5], sorted(b)
for s in b:
    assert a[s] == b[s], (s, a[s], b[s])
print("resumed steps 3..5: losses identical to the run without a stop")
PY
"$EXPORT" --checkpoint ck --out hf >export.txt 2>&1 || { cat export.txt; fail "colossus-export of the tp checkpoint"; }
[ -f hf/model.safetensors ] || { cat export.txt; fail "colossus-export wrote no model.safetensors"; }

# 3 does not divide 4 ranks: every rank refuses, naming the field (exit 1).
bash "$LAUNCH" -n 4 --logs logs3 -- "$TRAIN" "${ARGS[@]}" --tp 3 --out bad3 >bad3.txt 2>&1 \
  && fail "--tp 3 on 4 ranks succeeded"
grep -q "parallel.tensor_parallel = 3 does not divide the world size 4" bad3.txt logs3/* \
  || { cat bad3.txt logs3/*; fail "--tp 3 message"; }
# One process cannot be tensor parallel.
"$TRAIN" "${ARGS[@]}" --tp 2 --out bad1 >bad1.txt 2>&1 && fail "--tp 2 in one process succeeded"
grep -q "needs a job of several ranks" bad1.txt || { cat bad1.txt; fail "--tp 2 one-process message"; }
echo "PASS"
