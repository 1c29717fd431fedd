#!/usr/bin/env bash
# train_gpt with --tp, launched the way a user would (launch_local.sh, the torchrun
# environment): 2-way tensor parallel x 2-way data parallel on 4 processes logs the same
# losses as one process with the same global batch, rank 0 reports the layout and writes
# the outputs; impossible layouts are clear errors.
#   train_gpt_tp_test.sh PATH/TO/train_gpt PATH/TO/colossus-data SOURCE_DIR
set -u
TRAIN=$(realpath "$1")
DATA=$(realpath "$2")
SRC=$(realpath "$3")
LAUNCH="$SRC/examples/train_gpt/launch_local.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/train_gpt_tp.XXXXXX")
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }

head -c 100000 "$SRC/examples/data/kjv-pentateuch.txt" > text.txt
"$DATA" encode --tokenizer byte --output ds --val-fraction 0.1 text.txt >/dev/null || fail "encode"

ARGS=(--preset tiny --train 'ds/train_*.bin' --val 'ds/val_*.bin' --steps 6 --threads 1
      --global-batch 8 --set training.batch_size=2 --set training.seq_len=32
      --set sample.tokens=4 --set eval.batches=2 --set optimizer.warmup_steps=2)

"$TRAIN" "${ARGS[@]}" --out one >one.txt 2>&1 || { cat one.txt; fail "one process"; }
bash "$LAUNCH" -n 4 --logs logs4 -- "$TRAIN" "${ARGS[@]}" --tp 2 --out tp >tp.txt 2>&1 \
  || { cat tp.txt logs4/*; fail "4 ranks, --tp 2"; }
grep -q "tensor parallel 2 x data parallel 2" tp.txt || { cat tp.txt; fail "rank 0 did not report the layout"; }
[ -f tp/model.safetensors ] || fail "no weights from rank 0"

/usr/bin/python3 - one/metrics.jsonl tp/metrics.jsonl <<'PY' || fail "tp x dp differs from 1 process"
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

# 3 does not divide 4 ranks: every rank refuses, naming the field (exit 1).
bash "$LAUNCH" -n 4 --logs logs3 -- "$TRAIN" "${ARGS[@]}" --tp 3 --out bad3 >bad3.txt 2>&1 \
  && fail "--tp 3 on 4 ranks succeeded"
grep -q "parallel.tensor_parallel = 3 does not divide the world size 4" bad3.txt logs3/* \
  || { cat bad3.txt logs3/*; fail "--tp 3 message"; }
# One process cannot be tensor parallel; ZeRO-1 with TP is refused by the config check.
"$TRAIN" "${ARGS[@]}" --tp 2 --out bad1 >bad1.txt 2>&1 && fail "--tp 2 in one process succeeded"
grep -q "needs a job of several ranks" bad1.txt || { cat bad1.txt; fail "--tp 2 one-process message"; }
"$TRAIN" "${ARGS[@]}" --tp 2 --zero --out badz >badz.txt 2>&1
rc=$?
[ "$rc" -eq 2 ] || { cat badz.txt; fail "--tp 2 --zero: exit $rc, want 2"; }
grep -q "parallel.zero = 1 with parallel.tensor_parallel = 2" badz.txt || { cat badz.txt; fail "--zero message"; }
echo "PASS"
