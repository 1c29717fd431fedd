#!/usr/bin/env bash
# Elastic shrink, end to end on the CPU: a colossus-coordinator (min 1, max 2 nodes) and
# two node agents on this machine (nodes a and b, two train_gpt workers each: 4
# data-parallel Gloo ranks), checkpointing every 40 steps through the coordinator.
# Once step 80 (or the latest commit after it) is committed, node b dies: its agent and both of
# its workers are SIGKILLed at once and never come back. The job must
#   - re-form by itself on node a alone (2 ranks) and finish (the coordinator exits 0)
#     after exactly one restart, with events naming node b and world size 2;
#   - resume from the last committed step, loaded resharded 4 -> 2, with the global
#     batch kept (2 micro-batches per rank instead of 1);
#   - continue the same optimisation: every loss after the restart within 1e-4
#     (relative) of an uninterrupted 4-rank run's at the same step, and the first ones
#     close to the loss at the checkpoint step;
#   - commit only checkpoints whose shard count is the world size of the generation
#     that wrote them (never a mix of old and new shards).
#   elastic_test.sh TRAIN_GPT COLOSSUS_LAUNCH COLOSSUS_DATA COLOSSUS_COORDINATOR SOURCE_DIR
set -u
TRAIN=$(realpath "$1"); LAUNCH=$(realpath "$2"); DATA=$(realpath "$3"); COORD=$(realpath "$4")
SRC=$(realpath "$5")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colossus_elastic.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
source "$SRC/tests/runtime/recovery/launch_helpers.sh"
dump() { for f in "$@"; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done; }

prepare_data "$SRC"
STEPS=400 EVERY=40 KILL_AFTER=80
ARGS=(--preset tiny --train "$WORK/ds/train_*.bin" --steps $STEPS --threads 1 --global-batch 8
      --set training.batch_size=2 --set training.seq_len=32 --set sample.tokens=4
      --set optimizer.warmup_steps=20 --checkpoint-every $EVERY --keep 3)

# The uninterrupted 4-rank run (no coordinator: launch_local.sh).
bash "$SRC/examples/train_gpt/launch_local.sh" -n 4 --logs ref_logs -- "$TRAIN" "${ARGS[@]}" \
  --out "$WORK/ref" --checkpoint-dir "$WORK/ref_ckpt" >ref.txt 2>&1 || { cat ref.txt; fail "reference run"; }

RUN=$WORK/job
mkdir -p "$RUN"
echo "elastic-test-token" > token
"$COORD" --job-id elastic --listen 127.0.0.1:0 --run-dir "$RUN" --token-file token \
  --min-nodes 1 --max-nodes 2 --settle-ms 500 --heartbeat-interval-ms 250 \
  --node-timeout-ms 3000 --hang-timeout-ms 30000 --max-restarts 2 --stop-grace-ms 1000 \
  > coordinator.out 2> coordinator.log &
COORD_PID=$!
PIDS+=($COORD_PID)
for _ in $(seq 100); do grep -q "listening on" coordinator.out 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\) .*/\1/p' coordinator.out)
[ -n "$PORT" ] || { dump coordinator.out coordinator.log; fail "the coordinator did not start"; }

agent() {  # agent NODE ADDRESS: two workers
  exec "$LAUNCH" --agent --coordinator "127.0.0.1:$PORT" --job-id elastic --token-file "$WORK/token" \
    --run-dir "$RUN" --node-id "$1" --address "$2" --workers 2 --gpus none --stop-grace 1s --keepalive 1s \
    --log none -- "$TRAIN" "${ARGS[@]}" --out "$RUN/out" > "$WORK/agent-$1.out" 2>&1
}
agent a 127.0.0.1 &
AGENT_A=$!
# Node a joins first so that it holds ranks 0-1 (and rank 0's metrics.jsonl survives).
sleep 0.3
agent b 127.0.0.2 &
AGENT_B=$!
PIDS+=($AGENT_A $AGENT_B)

# Generation 1 must have formed with both nodes: ranks 2-3 are node b's.
wait_step "$RUN" 1 3 0 $COORD_PID 60
grep -qx "COLOSSUS_NODE_ID=b" <(tr '\0' '\n' < "/proc/$(worker_pid "$RUN" 3)/environ") \
  || fail "rank 3 of generation 1 is not node b's"
# Once step 80 (or a later one) is committed, every worker is paused so that nothing is
# committed between reading the latest step and the kill.
wait_commit "$RUN/checkpoints" $KILL_AFTER $COORD_PID 60
signal_ranks "$RUN" STOP 0 1 2 3
sleep 0.3  # a shard report already sent is answered
# The coordinator's word is what the next generation resumes from.
CKPT=$(sed -n 's/.*checkpoint step \([0-9]*\) committed.*/\1/p' coordinator.log | tail -1)
[ -n "$CKPT" ] || { dump coordinator.log; fail "no commit event in the coordinator's log"; }
[ "$CKPT" -lt $((STEPS - EVERY)) ] || fail "the job was too far (step $CKPT committed) to test a shrink"
W2=$(worker_pid "$RUN" 2); W3=$(worker_pid "$RUN" 3)
[ -n "$W2" ] && [ -n "$W3" ] || fail "no processes for node b's ranks"
seen=$(status_step "$RUN" 1 0)
t_fail=$(now)
kill -9 "$AGENT_B" "$W2" "$W3"
wait "$AGENT_B" 2>/dev/null
signal_ranks "$RUN" CONT 0 1
# The first step of generation 2 (steps count from the resumed one).
deadline=$(( $(date +%s) + 60 ))
while [ "$(status_step "$RUN" 2 0)" -lt 0 ]; do
  kill -0 $COORD_PID 2>/dev/null || break
  [ "$(date +%s)" -lt $deadline ] || { dump coordinator.log agent-a.out; fail "no generation 2"; }
  sleep 0.02
done
t_back=$(now)

wait $COORD_PID; rc=$?
[ "$rc" -eq 0 ] || { dump coordinator.log agent-a.out "$RUN"/logs/gen2/rank0.err; fail "the coordinator exited $rc (the job did not succeed)"; }
wait $AGENT_A || fail "agent a exited with $?"
for r in 2 3; do
  for p in $W2 $W3; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" && fail "node b's worker $p survived"; done
done

# The restart: exactly one; generation 2 is node a alone, world size 2, and says node b
# was left out.
grep -q "event RESTART generation=2" coordinator.log || { dump coordinator.log; fail "no restart event"; }
grep -q "generation=3" coordinator.log && { dump coordinator.log; fail "more than one restart"; }
grep "GENERATION_FORMED generation=2" coordinator.log | grep -q "1 nodes, world size 2 without node b" \
  || { dump coordinator.log; fail "generation 2 did not form with world size 2 naming the lost node b"; }
LOG0=$(cat "$RUN"/logs/gen2/rank0.out "$RUN"/logs/gen2/rank0.err)
grep -q "resumed from step $CKPT" <<<"$LOG0" || { echo "$LOG0" | tail -30; fail "generation 2 did not resume from step $CKPT"; }
grep -q "x 2 accum x 2 ranks" <<<"$LOG0" \
  || { grep "accum" <<<"$LOG0"; fail "generation 2 does not keep the global batch (2 micro-batches x 2 ranks)"; }
grep -q "x 1 accum x 4 ranks" "$RUN/logs/gen1/rank0.err" || fail "generation 1 is not 4 ranks of 1 micro-batch"

# Checkpoints: every commit's shard count is its generation's world size.
/usr/bin/python3 - "$RUN/checkpoints" "$CKPT" <<'PY' || fail "a committed checkpoint has the wrong shard count"
import json, os, sys
d = sys.argv[1]
found = 0
for name in sorted(os.listdir(d)):
    commit = os.path.join(d, name, "COMMIT.json")
    if not os.path.exists(commit): continue
    c = json.load(open(commit))
    step = int(''.join(ch for ch in name if ch.isdigit()) or 0)
    shards = sorted(f for f in os.listdir(os.path.join(d, name)) if f.endswith(".bin"))
    want = 4 if step <= int(sys.argv[2]) else 2
    listed = len(c["shards"])
    if listed != want or shards != sorted("shard-%d-of-%d.bin" % (r, want) for r in range(want)):
        print("step dir %s: COMMIT.json lists %d shards, files %s; expected %d" % (name, listed, shards, want))
        sys.exit(1)
    found += 1
if found == 0: print("no committed checkpoint"); sys.exit(1)
PY

# Loss continuity against the uninterrupted run.
losses "$WORK/ref/metrics.jsonl" > ref_losses.txt
losses "$RUN/out/metrics.jsonl" > run_losses.txt
/usr/bin/python3 - ref_losses.txt run_losses.txt "$CKPT" "$seen" <<'PY' || fail "the loss is not continuous across the restart"
import sys
ref = {}
for line in open(sys.argv[1]):
    s, l = line.split(); ref[int(s)] = float(l)
rows = [tuple(line.split()) for line in open(sys.argv[2])]
rows = [(int(s), float(l)) for s, l in rows]
ckpt, seen = int(sys.argv[3]), int(sys.argv[4])
# Generation 2's records start where the step number drops back to the checkpoint.
restart = next(i for i in range(1, len(rows)) if rows[i][0] <= rows[i - 1][0])
before, after = rows[:restart], rows[restart:]
assert after[0][0] == ckpt, "generation 2 starts at step %d, not %d" % (after[0][0], ckpt)
assert after[-1][0] == max(ref), "generation 2 ends at step %d, not %d" % (after[-1][0], max(ref))
worst = 0.0
for s, l in before + after:
    rel = abs(l - ref[s]) / abs(ref[s])
    worst = max(worst, rel)
    if rel > 1e-4:
        print("step %d: loss %.6f, uninterrupted 4-rank run %.6f (rel %.2e)" % (s, l, ref[s], rel)); sys.exit(1)
at_ckpt = dict(before)[ckpt - 1]
first = [l for _, l in after[:3]]
print("loss at the checkpoint step %d: %.4f; first after the restart: %s; worst relative difference "
      "to the uninterrupted run over %d steps: %.2e" % (ckpt, at_ckpt, " ".join("%.4f" % l for l in first),
                                                       len(rows), worst))
for l in first:
    assert abs(l - at_ckpt) < 0.1 * abs(at_ckpt), "first loss after the restart %.4f vs %.4f at the checkpoint" % (l, at_ckpt)
PY

/usr/bin/python3 -c 'import sys; print("elastic: node b killed at step %s; failure -> first step on 2 ranks: %.2f s" % (sys.argv[1], float(sys.argv[3]) - float(sys.argv[2])))' \
  "$seen" "$t_fail" "$t_back"
echo PASS
