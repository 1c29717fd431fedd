#!/usr/bin/env bash
# Storage faults in a running job under colossus-launch, end to end on the CPU: 2
# train_gpt workers (Gloo) on one local node, checkpointing every 40 steps through the
# coordinator.
#   full: the checkpoint directory is a small tmpfs this script mounts. Once step 40 is
#     committed the workers are paused at the latest commit L and the disk is filled.
#     The saves that follow fail: the job keeps training (no restart), rank 0's log
#     names the shard file and "No space left on device", step L stays the latest
#     (status, COMMIT.json) and intact, and no later step is committed while the disk
#     is full; rank 1's own log names its own shard file and ENOSPC. Once space is
#     freed the next save commits, and the job finishes.
#     Skipped (77) when tmpfs cannot be mounted here.
#   corrupt: once step 80 (or a later L) is committed, bytes in the middle of rank 1's
#     shard of step L are flipped and rank 1 is SIGKILLed. The job restarts exactly
#     once, falls back to step L-40 naming the bad file, saves and commits step L again
#     (generation 2, no failed save), finishes (exit 0), and its final weights equal a
#     run without failure bit for bit. Every rank names the bad file in its own log;
#     the coordinator is told (InvalidateCheckpoints): status --json lists step L as
#     invalid with the file and never reports generation 1's step L as latest again, and
#     an event names step L, the file and step L-40 as the latest before step L is
#     committed again.
#   corrupt1: as corrupt, with ZeRO-1 and a model of three checksum blocks per shard, the
#     last block of rank 1's shard flipped: only rank 1 reads it. Its reason (naming the
#     file) reaches rank 0's log and the coordinator's status; then the job is stopped.
#   storage_fault_test.sh TRAIN_GPT COLOSSUS_LAUNCH COLOSSUS_DATA SOURCE_DIR [full|corrupt|corrupt1]...
set -u
TRAIN=$(realpath "$1"); LAUNCH=$(realpath "$2"); DATA=$(realpath "$3"); SRC=$(realpath "$4")
shift 4
CASES=("$@"); [ "${#CASES[@]}" -gt 0 ] || CASES=(full corrupt corrupt1)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colossus_storage.XXXXXX")
MNT=""
LAUNCHER=""
cleanup() {
  [ -n "$LAUNCHER" ] && kill -9 "$LAUNCHER" 2>/dev/null
  [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$SRC/tests/runtime/recovery/launch_helpers.sh"
dump() { for f in "$@"; do [ -f "$f" ] && { echo "--- $f"; tail -40 "$f"; }; done; }

prepare_data "$SRC"
STEPS=600
ARGS=(--preset tiny --train "$WORK/ds/train_*.bin" --steps $STEPS --threads 1 --global-batch 8
      --set training.batch_size=2 --set training.seq_len=32 --set sample.tokens=4
      --set optimizer.warmup_steps=20 --checkpoint-every 40 --keep 2)

start_job() {  # start_job NAME CHECKPOINT_DIR [ARGS...]: the launcher in the background ($LAUNCHER)
  local name=$1 run="$WORK/$1" ckdir=$2 extra="" a
  shift 2
  for a in "$@"; do extra="$extra, \"$a\""; done
  mkdir -p "$run"
  cat > "$run/job.yaml" <<YAML
version: 1
job: {name: $name, run_dir: $run}
nodes:
  - {host: localhost, gpus: 0, workers: 2}
worker:
  command: [$TRAIN, $(printf '"%s", ' "${ARGS[@]}") --out, $run/out, --checkpoint-dir, $ckdir$extra]
  log: rank0
restart: {max_restarts: 2, backoff: 0s}
health: {heartbeat_interval: 500ms, node_timeout: 10s, hang_timeout: 60s}
YAML
  "$LAUNCH" "$run/job.yaml" --no-status >"$run/launch.txt" 2>&1 &
  LAUNCHER=$!
}
step_dir() { printf '%s/step-%08d' "$1" "$2"; }  # format.h's StepDirName
committed() { [ -f "$(step_dir "$1" "$2")/COMMIT.json" ]; }
latest_step() {  # the coordinator's latest committed step, from colossus-launch status --json
  "$LAUNCH" status "$1/job.yaml" --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys
try: print(json.load(sys.stdin).get("latest_checkpoint", {}).get("step", 0))
except Exception: print(-1)'
}
verify_committed() {  # every committed step under DIR: COMMIT.json's shards all there, right sizes
  /usr/bin/python3 - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
for name in sorted(os.listdir(d)):
    commit = os.path.join(d, name, "COMMIT.json")
    if ".discarded" in name or not os.path.exists(commit): continue
    c = json.load(open(commit))
    for s in c["shards"]:
        f = os.path.join(d, name, s["file"])
        if not os.path.exists(f) or os.path.getsize(f) != s["bytes"]:
            print("committed step %s: %s missing or not %d bytes" % (name, s["file"], s["bytes"])); sys.exit(1)
PY
}

pause_at_commit() {  # pause_at_commit RUN CKPT STEP: both ranks stopped, a step >= STEP
  # committed both by the coordinator and on disk; prints that step
  local i l d
  for i in $(seq 50); do
    wait_commit "$2" "$3" "$LAUNCHER" 60
    signal_ranks "$1" STOP 0 1
    sleep 0.3  # a shard report already sent is answered
    l=$(latest_step "$1"); d=$(latest_commit "$2")
    [ "$l" = "$d" ] && { echo "$l"; return; }
    signal_ranks "$1" CONT 0 1  # between the coordinator's commit and COMMIT.json
    sleep 0.05
  done
  fail "$1: the coordinator's latest step never matched the disk's"
}

case_full() {
  MNT="$WORK/mnt"
  mkdir -p "$MNT"
  if ! mount -t tmpfs -o size=48m tmpfs "$MNT" 2>"$WORK/mount.err"; then
    echo "SKIP full: cannot mount a tmpfs here ($(cat "$WORK/mount.err")); run as root to test a full checkpoint disk"
    MNT=""
    return 77
  fi
  local run="$WORK/full" ckpt="$MNT/ckpt"
  start_job full "$ckpt" --set checkpoint.keep=100
  local L; L=$(pause_at_commit "$run" "$ckpt" 40) || exit 1
  [ "$L" -le $((STEPS - 200)) ] || fail "full: the job was too far (step $L) to fill the disk"
  local sums; sums=$(cd "$(step_dir "$ckpt" "$L")" && md5sum shard-*.bin COMMIT.json)
  dd if=/dev/zero of="$MNT/filler" bs=64k 2>/dev/null  # until ENOSPC
  signal_ranks "$run" CONT 0 1
  # Two saves fail (L+40, L+80); the second reports the first's error.
  wait_step "$run" 1 0 $((L + 90)) "$LAUNCHER" 60
  signal_ranks "$run" STOP 0 1
  local seen; seen=$(status_step "$run" 1 0)
  local log="$run/logs/gen1/rank0.err"  # train_gpt reports on stderr
  grep "checkpoint save failed, training goes on" "$log" | grep "shard-0-of-2.bin" \
    | grep -qi "no space left on device" \
    || { dump "$log"; fail "full: no failed save naming the shard file and ENOSPC"; }
  # Rank 1's own failure is in rank 1's own log (rank 0 does not see rank 1's file).
  local log1="$run/logs/gen1/rank1.err"
  grep "colossus: rank 1: checkpoint save failed, training goes on: step $((L + 40))" "$log1" \
    | grep "shard-1-of-2.bin" | grep -qi "no space left on device" \
    || { dump "$log1"; fail "full: rank 1 did not report its own failed save of step $((L + 40)) (file, ENOSPC)"; }
  [ "$(latest_step "$run")" = "$L" ] || fail "full: the coordinator's latest step is $(latest_step "$run"), not $L"
  [ "$(latest_commit "$ckpt")" = "$L" ] || fail "full: step $(latest_commit "$ckpt") was committed on a full disk"
  [ "$(cd "$(step_dir "$ckpt" "$L")" && md5sum shard-*.bin COMMIT.json)" = "$sums" ] \
    || fail "full: step $L changed on the full disk"
  verify_committed "$ckpt" || fail "full: a committed step is incomplete"
  rm -f "$MNT/filler"
  signal_ranks "$run" CONT 0 1
  wait $LAUNCHER; local rc=$?
  LAUNCHER=""
  [ "$rc" -eq 0 ] || { dump "$run/launch.txt" "$log"; fail "full: colossus-launch exit $rc"; }
  ! grep -q "restart 1 of" "$run/launch.txt" || { dump "$run/launch.txt"; fail "full: the job restarted"; }
  verify_committed "$ckpt" || fail "full: a committed step is incomplete"
  [ -z "$(find "$ckpt" -name '*.tmp')" ] || { find "$ckpt" -name '*.tmp'; fail "full: temporary files left behind"; }
  # Every save after step L either failed with its error named (while the disk was full)
  # or committed; none failed once the space was back (the pause was at step >= seen,
  # less than 200 ms of steps after it).
  local failed; failed=$(grep "checkpoint save failed" "$log" | grep -o 'step-[0-9]*' | sed 's/step-0*//' | sort -un)
  /usr/bin/python3 - "$ckpt" "$L" "$seen" $STEPS $failed <<'PY' || fail "full: saves after step $L"
import os, sys
ckpt, L, seen, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
failed = sorted(int(x) for x in sys.argv[5:])
committed = {s for s in range(40, steps + 1, 40)
             if os.path.exists(os.path.join(ckpt, "step-%08d" % s, "COMMIT.json"))}
for s in range(L + 40, steps + 1, 40):
    if s in committed and s in failed: print("step %d both failed and committed" % s); sys.exit(1)
    if s not in committed and s not in failed: print("step %d neither committed nor reported failed" % s); sys.exit(1)
if not {L + 40, L + 80} <= set(failed): print("saves %d and %d did not fail: %s" % (L + 40, L + 80, failed)); sys.exit(1)
if max(failed) > seen + 60: print("save %d failed after the space was freed (paused at step %d+)" % (max(failed), seen)); sys.exit(1)
after = sorted(s for s in committed if s > L)
if not after or after[0] != max(failed) + 40: print("the first save after freeing space did not commit: %s" % after); sys.exit(1)
print("full: step %d stayed latest through failed saves %s (ENOSPC, file named); the first save after "
      "freeing space (%d) committed; %d committed steps verified" % (L, failed, after[0], len(committed)))
PY
  umount "$MNT" && MNT=""
}

case_corrupt() {
  # A run without failure, for the final weights.
  bash "$SRC/examples/train_gpt/launch_local.sh" -n 2 --logs ref_logs -- "$TRAIN" "${ARGS[@]}" \
    --out "$WORK/ref" --checkpoint-dir "$WORK/ref_ckpt" >ref.txt 2>&1 || { cat ref.txt; fail "reference run"; }
  local run="$WORK/corrupt" ckpt="$WORK/corrupt/ckpt"
  start_job corrupt "$ckpt"
  local L; L=$(pause_at_commit "$run" "$ckpt" 80) || exit 1
  [ "$L" -le $((STEPS - 80)) ] || fail "corrupt: the job was too far (step $L)"
  local prev=$((L - 40)) shard; shard="$(step_dir "$ckpt" "$L")/shard-1-of-2.bin"
  [ -f "$shard" ] || { ls "$(step_dir "$ckpt" "$L")"; fail "corrupt: no $shard"; }
  committed "$ckpt" $prev || fail "corrupt: step $prev is not kept (keep 2)"
  # Flip 16 bytes in the middle of the file (the data, not the header).
  /usr/bin/python3 - "$shard" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    b = f.read(16); f.seek(-16, 1); f.write(bytes(x ^ 0xFF for x in b))
PY
  local victim; victim=$(worker_pid "$run" 1)
  kill -KILL "$victim"
  signal_ranks "$run" CONT 0
  # While generation 2 runs, the coordinator's status shows the fallback: step L invalid
  # (the bad file named) and never step L of generation 1 as the latest again.
  local st="" i
  for i in $(seq 600); do
    kill -0 "$LAUNCHER" 2>/dev/null || break
    st=$("$LAUNCH" status "$run/job.yaml" --json 2>/dev/null)
    echo "$st" | grep -q invalid_checkpoints && break
    st=""; sleep 0.05
  done
  [ -n "$st" ] || fail "corrupt: colossus-launch status --json never showed invalid_checkpoints"
  echo "$st" | /usr/bin/python3 -c '
import json, sys
L, prev = int(sys.argv[1]), int(sys.argv[2])
s = json.load(sys.stdin)
bad = s["invalid_checkpoints"]; latest = s.get("latest_checkpoint", {})
step, gen = int(latest.get("step", 0)), int(latest.get("generation", 0))
assert len(bad) == 1 and int(bad[0]["step"]) == L, "invalid: %s" % bad
assert "shard-1-of-2.bin" in bad[0]["reason"], "the reason does not name the file: %s" % bad[0]
assert step == prev or (step >= L and gen >= 2), "latest after the fallback: %s" % latest
print("corrupt: status after the fallback: step %d invalid (%s); latest step %d of generation %d"
      % (L, bad[0]["reason"][:120], step, gen))' "$L" "$prev" || fail "corrupt: status after the fallback"
  wait $LAUNCHER; local rc=$?
  LAUNCHER=""
  local log2="$run/logs/gen2/rank0.err"
  [ "$rc" -eq 0 ] || { dump "$run/launch.txt" "$log2"; fail "corrupt: colossus-launch exit $rc"; }
  grep -q "restart 1 of 2" "$run/launch.txt" || { dump "$run/launch.txt"; fail "corrupt: no restart"; }
  ! grep -q "restart 2 of 2" "$run/launch.txt" || { dump "$run/launch.txt"; fail "corrupt: more than one restart"; }
  grep "checkpoint step $L skipped" "$log2" | grep -q "shard-1-of-2.bin" \
    || { dump "$log2"; fail "corrupt: the skipped step does not name the bad file"; }
  grep -q "resumed from step $prev" "$log2" || { dump "$log2"; fail "corrupt: did not fall back to step $prev"; }
  # Rank 1 read the bad shard too (every rank reads every block of a dp checkpoint): it
  # says so in its own log.
  grep "colossus: rank 1: checkpoint step $L skipped" "$run/logs/gen2/rank1.err" | grep -q "shard-1-of-2.bin" \
    || { dump "$run/logs/gen2/rank1.err"; fail "corrupt: rank 1 did not name the bad file in its log"; }
  # The coordinator was told: its event names step L, the file and step $prev as latest,
  # before generation 2 committed step L again.
  local events; events=$(grep -n "checkpoint step $L invalid" "$run/launch.txt")
  echo "$events" | grep "shard-1-of-2.bin" | grep -q "resumed from step $prev, now the latest" \
    || { dump "$run/launch.txt"; fail "corrupt: no CHECKPOINT_INVALIDATED event naming step $L, the file and step $prev"; }
  local recommit; recommit=$(grep -n "checkpoint step $L committed: .*(generation 2)" "$run/launch.txt" | head -1 | cut -d: -f1)
  [ -n "$recommit" ] && [ "${events%%:*}" -lt "$recommit" ] \
    || { dump "$run/launch.txt"; fail "corrupt: the invalidation did not precede the new commit of step $L"; }
  # Saving step L again is a new save of it (not a retry of the corrupt commit): it
  # commits once both new shards are in, and nothing fails on the way.
  ! grep -q "checkpoint save failed" "$log2" || { grep "checkpoint save failed" "$log2"; fail "corrupt: a save failed after the fallback"; }
  grep -q "checkpoint step $L committed: .*(generation 2)" "$run/launch.txt" \
    || { grep "committed" "$run/launch.txt"; fail "corrupt: step $L was not committed again by generation 2"; }
  cmp -s "$WORK/ref/model.safetensors" "$run/out/model.safetensors" \
    || fail "corrupt: final weights differ from the run without failure"
  verify_committed "$ckpt" || fail "corrupt: a committed step is incomplete"
  echo "corrupt: $(grep -o "checkpoint step $L skipped.*" "$log2" | cut -c1-200)"
  echo "corrupt: one restart, resumed from step $prev, final weights identical to the run without failure"
}

case_corrupt1() {
  # Only rank 1 reads the bad block: ZeRO-1 (each rank loads only its own moments) and a
  # model whose shards span three 4 MiB checksum blocks; the last block of rank 1's shard
  # holds only its second moments. Rank 0 loads step L fine, so the reason the
  # coordinator gets must come from rank 1 (through the group's store).
  local run="$WORK/corrupt1" ckpt="$WORK/corrupt1/ckpt"
  start_job corrupt1 "$ckpt" --set parallel.zero=1 --set model.n_embd=256
  local L; L=$(pause_at_commit "$run" "$ckpt" 80) || exit 1
  local prev=$((L - 40)) shard; shard="$(step_dir "$ckpt" "$L")/shard-1-of-2.bin"
  local size; size=$(stat -c %s "$shard") || fail "corrupt1: no $shard"
  [ "$size" -gt $((8 * 1048576 + 4096 + 64)) ] || fail "corrupt1: $shard is $size bytes, not three blocks"
  /usr/bin/python3 - "$shard" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) - 64)
    b = f.read(16); f.seek(-16, 1); f.write(bytes(x ^ 0xFF for x in b))
PY
  kill -KILL "$(worker_pid "$run" 1)"
  signal_ranks "$run" CONT 0
  local st="" i
  for i in $(seq 600); do
    kill -0 "$LAUNCHER" 2>/dev/null || break
    st=$("$LAUNCH" status "$run/job.yaml" --json 2>/dev/null)
    echo "$st" | grep -q invalid_checkpoints && break
    st=""; sleep 0.05
  done
  [ -n "$st" ] || fail "corrupt1: colossus-launch status --json never showed invalid_checkpoints"
  echo "$st" | /usr/bin/python3 -c '
import json, sys
L = int(sys.argv[1])
bad = json.load(sys.stdin)["invalid_checkpoints"]
assert len(bad) == 1 and int(bad[0]["step"]) == L, "invalid: %s" % bad
r = bad[0]["reason"]
assert r.startswith("rank 1: ") and "shard-1-of-2.bin" in r, "not rank 1 naming its file: %s" % r
print("corrupt1: status: step %d invalid: %s" % (L, r[:120]))' "$L" || fail "corrupt1: the reason is not rank 1's"
  local log0="$run/logs/gen2/rank0.err" log1="$run/logs/gen2/rank1.err"
  wait_step "$run" 2 0 $((prev + 1)) "$LAUNCHER" 60
  ! grep -q "colossus: rank 0: checkpoint step $L skipped" "$log0" \
    || { dump "$log0"; fail "corrupt1: rank 0 read the bad block itself (the case tests nothing)"; }
  grep "colossus: checkpoint step $L skipped: rank 1: " "$log0" | grep -q "shard-1-of-2.bin" \
    || { dump "$log0"; fail "corrupt1: rank 0's log does not name rank 1's bad file"; }
  grep "colossus: rank 1: checkpoint step $L skipped" "$log1" | grep -q "shard-1-of-2.bin" \
    || { dump "$log1"; fail "corrupt1: rank 1 did not name the bad file in its log"; }
  grep -q "resumed from step $prev" "$log0" || { dump "$log0"; fail "corrupt1: did not fall back to step $prev"; }
  "$LAUNCH" stop "$run/job.yaml" >/dev/null 2>&1
  wait $LAUNCHER; LAUNCHER=""
  echo "corrupt1: only rank 1 read the bad block; its reason reached rank 0's log and the coordinator"
}

skipped=0
for c in "${CASES[@]}"; do
  "case_$c"; rc=$?
  [ "$rc" -eq 77 ] && skipped=1
done
[ "$skipped" -eq 1 ] && [ "${#CASES[@]}" -eq 1 ] && exit 77
echo PASS
