#!/usr/bin/env bash
# colossus-data end to end: encode (byte and SentencePiece), train-spm, inspect, and the
# exit codes a script relies on (0 ok, 2 usage, 1 data error naming the file).
#   colossus_data_e2e.sh PATH/TO/colossus-data SOURCE_DIR
set -u
BIN=$(realpath "$1")
SRC=$(realpath "$2")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colossus_data_e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_rc WANT CMD...: runs CMD, stdout+stderr to out.txt, checks the exit code.
expect_rc() {
  local want=$1; shift
  "$@" >out.txt 2>err.txt
  local rc=$?
  [ "$rc" -eq "$want" ] || { cat out.txt err.txt >&2; fail "exit $rc, want $want: $*"; }
}
expect_err() { grep -qF -- "$1" err.txt || { cat err.txt >&2; fail "stderr lacks '$1'"; }; }
header_tokens() { "$BIN" inspect "$1" | awk '/^tokens/ {print $2}'; }

head -c 200000 "$SRC/examples/data/kjv-pentateuch.txt" > kjv.txt

# -- encode, byte-level: one token per byte, split 90/10 at a line start ------------------
expect_rc 0 "$BIN" encode --tokenizer byte --output ds --val-fraction 0.1 --shard-tokens 50000 kjv.txt
for f in ds/train_000000.bin ds/train_000003.bin ds/val_000000.bin ds/tokenizer.json; do
  [ -f "$f" ] || fail "$f not written"
done
[ ! -e ds/train_000004.bin ] || fail "too many train shards"
grep -q '"tokenizer": "byte"' ds/tokenizer.json || fail "tokenizer.json: $(cat ds/tokenizer.json)"
grep -q '"vocab_size": 256' ds/tokenizer.json || fail "tokenizer.json: $(cat ds/tokenizer.json)"
total=0
for f in ds/train_*.bin ds/val_*.bin; do total=$((total + $(header_tokens "$f"))); done
[ "$total" -eq 200000 ] || fail "byte tokens $total != 200000 bytes of text"
val=$(header_tokens ds/val_000000.bin)
[ "$val" -gt 19000 ] && [ "$val" -le 20000 ] || fail "val holds $val tokens, want ~10% (<= 20000)"
# The val split begins at a line start: the byte before it in the text is a newline.
split=$((200000 - val))
[ "$(head -c "$split" kjv.txt | tail -c 1 | od -An -c | tr -d ' ')" = '\n' ] ||
  fail "val does not start at a line start"

# -- deterministic: the same input gives byte-identical shards ------------------------------
expect_rc 0 "$BIN" encode --tokenizer byte --output ds2 --val-fraction 0.1 --shard-tokens 50000 kjv.txt
for f in ds/*.bin; do cmp -s "$f" "ds2/$(basename "$f")" || fail "$f differs between runs"; done

# -- an existing dataset is not silently mixed with a new one -------------------------------
expect_rc 1 "$BIN" encode --tokenizer byte --output ds kjv.txt
expect_err "ds/"
expect_rc 0 "$BIN" encode --tokenizer byte --output ds --overwrite kjv.txt
[ ! -e ds/train_000001.bin ] || fail "--overwrite left a stale shard"

# -- usage errors: exit 2 ---------------------------------------------------------------------
expect_rc 2 "$BIN"
expect_rc 2 "$BIN" encode --output x kjv.txt
expect_rc 2 "$BIN" encode --tokenizer byte --output x --val-fraction 1.5 kjv.txt
expect_rc 2 "$BIN" frobnicate

# -- data errors: exit 1, naming the file -----------------------------------------------------
expect_rc 1 "$BIN" encode --tokenizer byte --output x missing.txt
expect_err "missing.txt"
expect_rc 1 "$BIN" encode --tokenizer nope.model --output x kjv.txt
expect_err "nope.model"
head -c 5000 ds/train_000000.bin > truncated.bin
expect_rc 1 "$BIN" inspect truncated.bin
expect_err "truncated.bin"
expect_err "offset 1024"
printf 'not a shard' > tiny.bin
expect_rc 1 "$BIN" inspect tiny.bin
expect_err "tiny.bin"
expect_rc 1 "$BIN" inspect --vocab-size 100 ds/val_000000.bin
expect_err "vocab_size"

# -- inspect prints the header and decodes with the dataset's tokenizer ---------------------
expect_rc 0 "$BIN" inspect ds/train_000000.bin --show 8
grep -q '^magic *20240520' out.txt || fail "inspect: no magic line"
grep -q '^text *"In the b"' out.txt || { cat out.txt; fail "inspect: no decoded text"; }

# -- SentencePiece: train, encode, inspect ----------------------------------------------------
expect_rc 0 "$BIN" train-spm --vocab-size 400 --model-prefix spm kjv.txt
[ -f spm.model ] && [ -f spm.vocab ] || fail "train-spm wrote no model"
expect_rc 0 "$BIN" encode --tokenizer spm.model --output spm_ds --val-fraction 0.05 kjv.txt
grep -q "\"tokenizer\": \"$WORK/spm.model\"" spm_ds/tokenizer.json ||
  fail "tokenizer.json: $(cat spm_ds/tokenizer.json)"
# 190000 bytes of train text; even 140 merges save a quarter.
spm_tokens=$(header_tokens spm_ds/train_000000.bin)
[ "$spm_tokens" -lt 150000 ] || fail "BPE did not compress: $spm_tokens tokens"
expect_rc 0 "$BIN" inspect spm_ds/train_000000.bin --show 20
grep -q '^text *"In the beginning' out.txt || { cat out.txt; fail "spm inspect: no decoded text"; }
expect_rc 1 "$BIN" train-spm --vocab-size 400 --model-prefix m2 missing.txt
expect_err "missing.txt"

echo "colossus-data end to end: ok"
