#!/usr/bin/env bash
# Automatic recovery of a tensor-parallel job under colossus-launch, end to end on the
# CPU: 4 train_gpt workers as tp 2 x dp 2 (Gloo) on one local node, checkpointing every
# 30 steps through the coordinator (CoordinatorShardCommitter: every rank reports its
# shard of the canonical state, strided pieces included). SIGKILL of rank 1 (the second
# TP rank of DP group 0) once it passes step 50: the job must restart exactly once by
# itself, with a reason naming rank 1, resume from the last committed step, and end with
# final weights bit-identical to the same job run through launch_local.sh without a
# failure. Prints the time from the failure to the first step after the restart.
#   tp_recovery_test.sh TRAIN_GPT COLOSSUS_LAUNCH COLOSSUS_DATA SOURCE_DIR
set -u
TRAIN=$(realpath "$1"); LAUNCH=$(realpath "$2"); DATA=$(realpath "$3"); SRC=$(realpath "$4")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colossus_tp_recovery.XXXXXX")
[ -n "${KEEP_WORK:-}" ] || trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# fail, now, prepare_data, status_step, worker_pid (tests/runtime/recovery/launch_helpers.sh)
source "$SRC/tests/runtime/recovery/launch_helpers.sh"
prepare_data "$SRC"
STEPS=120
ARGS=(--preset tiny --train "$WORK/ds/train_*.bin" --steps $STEPS --threads 1 --global-batch 8
      --set training.batch_size=4 --set training.seq_len=32 --set sample.tokens=4
      --set optimizer.warmup_steps=10 --checkpoint-every 30 --keep 2 --tp 2)

bash "$SRC/examples/train_gpt/launch_local.sh" -n 4 --logs ref_logs -- "$TRAIN" "${ARGS[@]}" \
  --out "$WORK/ref" --checkpoint-dir "$WORK/ref_ckpt" >ref.txt 2>&1 \
  || { cat ref.txt ref_logs/*; fail "reference run"; }

mkdir -p run
cat > run/job.yaml <<YAML
version: 1
job: {name: tp_recovery, run_dir: $WORK/run}
nodes:
  - {host: localhost, gpus: 0, workers: 4}
worker:
  command: [$TRAIN, $(printf '"%s", ' "${ARGS[@]}") --out, $WORK/run/out]
  log: rank0
restart: {max_restarts: 2, backoff: 0s}
health: {heartbeat_interval: 500ms, node_timeout: 10s, hang_timeout: 10s}
YAML
"$LAUNCH" run/job.yaml --no-status >launch.txt 2>&1 &
launcher=$!
AT=50
deadline=$(( $(date +%s) + 120 ))
while [ "$(status_step "$WORK/run" 1 1)" -lt "$AT" ]; do
  kill -0 $launcher 2>/dev/null || { cat launch.txt; fail "the job ended before step $AT"; }
  [ "$(date +%s)" -lt $deadline ] || { kill $launcher; fail "rank 1 never reached step $AT"; }
  sleep 0.05
done
pid=$(worker_pid "$WORK/run" 1)
[ -n "$pid" ] || { kill $launcher; fail "no process for rank 1"; }
seen=$(status_step "$WORK/run" 1 1)
t_fail=$(now)
kill -KILL "$pid"
# The first step completed by the next generation: its status file appears with it.
while [ "$(status_step "$WORK/run" 2 0)" -lt 0 ]; do
  kill -0 $launcher 2>/dev/null || break
  [ "$(date +%s)" -lt $((deadline + 120)) ] || { kill $launcher; fail "no restart"; }
  sleep 0.02
done
t_back=$(now)
wait $launcher; rc=$?
[ "$rc" -eq 0 ] || { tail -40 launch.txt; fail "colossus-launch exit $rc"; }
grep -q "restart 1 of 2" launch.txt || { cat launch.txt; fail "no restart reported"; }
! grep -q "restart 2 of 2" launch.txt || { cat launch.txt; fail "more than one restart"; }
grep -i "rank 1" launch.txt | grep -qiE "signal 9|killed" \
  || { cat launch.txt; fail "the restart's reason does not name rank 1"; }
resumed=$(grep -o "resumed from step [0-9]*" launch.txt | head -1)
[ -n "$resumed" ] || { cat launch.txt; fail "no resume reported"; }
grep -q '"tp": 2' "$WORK/run/checkpoints/step-00000120/COMMIT.json" \
  || fail "the last checkpoint does not record tp 2"
cmp -s ref/model.safetensors run/out/model.safetensors \
  || fail "final weights differ from the run without failure"
/usr/bin/python3 -c 'import sys; print("tp 2 x dp 2: SIGKILL of rank 1 at step %s (seen %s), %s; failure -> first step after restart: %.2f s; final weights identical" % (sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[5]) - float(sys.argv[4])))' \
  "$AT" "$seen" "$resumed" "$t_fail" "$t_back"
echo PASS
