#!/usr/bin/env bash
# Automatic recovery under colossus-launch, end to end on the CPU: 2 train_gpt workers
# (Gloo) on one local node, checkpointing every 50 steps through the coordinator.
#   1. a reference run through launch_local.sh, no failure;
#   2. for each seed: SIGKILL rank 1 once it reports a (seeded) random step >= k;
#   3. SIGSTOP rank 1 (a hang): the coordinator's hang timeout must fire.
# Each failure run must finish by itself (exit 0) after exactly one restart whose reason
# names the rank, and end with final weights bit-identical to the reference. Prints the
# time from the failure to the first step completed after the restart.
#   recovery_test.sh TRAIN_GPT COLOSSUS_LAUNCH COLOSSUS_DATA SOURCE_DIR [SEEDS...]
set -u
TRAIN=$(realpath "$1"); LAUNCH=$(realpath "$2"); DATA=$(realpath "$3"); SRC=$(realpath "$4")
shift 4
SEEDS=("$@"); [ "${#SEEDS[@]}" -gt 0 ] || SEEDS=(1 2)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colossus_recovery.XXXXXX")
[ -n "${KEEP_WORK:-}" ] || trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
source "$SRC/tests/runtime/recovery/launch_helpers.sh"

prepare_data "$SRC"
STEPS=400
ARGS=(--preset tiny --train "$WORK/ds/train_*.bin" --steps $STEPS --threads 1 --global-batch 8
      --set training.batch_size=2 --set training.seq_len=32 --set sample.tokens=4
      --set optimizer.warmup_steps=20 --checkpoint-every 50 --keep 2)

bash "$SRC/examples/train_gpt/launch_local.sh" -n 2 --logs ref_logs -- "$TRAIN" "${ARGS[@]}" \
  --out "$WORK/ref" --checkpoint-dir "$WORK/ref_ckpt" >ref.txt 2>&1 || { cat ref.txt; fail "reference run"; }

run_with_failure() {  # run_with_failure NAME SIGNAL AT_STEP
  local name=$1 sig=$2 at=$3 run="$WORK/$1"
  mkdir -p "$run"
  cat > "$run/job.yaml" <<YAML
version: 1
job: {name: $name, run_dir: $run}
nodes:
  - {host: localhost, gpus: 0, workers: 2}
worker:
  command: [$TRAIN, $(printf '"%s", ' "${ARGS[@]}") --out, $run/out]
  log: rank0
restart: {max_restarts: 2, backoff: 0s}
health: {heartbeat_interval: 500ms, node_timeout: 10s, hang_timeout: 3s}
YAML
  "$LAUNCH" "$run/job.yaml" --no-status >"$run/launch.txt" 2>&1 &
  local launcher=$!
  local deadline=$(( $(date +%s) + 60 )) pid=""
  while [ "$(status_step "$run" 1 1)" -lt "$at" ]; do
    kill -0 $launcher 2>/dev/null || { cat "$run/launch.txt"; fail "$name: job ended before step $at"; }
    [ "$(date +%s)" -lt $deadline ] || { kill $launcher; fail "$name: rank 1 never reached step $at"; }
    sleep 0.05
  done
  pid=$(worker_pid "$run" 1)
  [ -n "$pid" ] || { kill $launcher; fail "$name: no process for rank 1"; }
  local seen; seen=$(status_step "$run" 1 1)
  local t_fail; t_fail=$(now)
  kill -"$sig" "$pid"
  # The first step completed by the next generation (the first is 1): its status file appears at it.
  while [ "$(status_step "$run" 2 0)" -lt 0 ]; do
    kill -0 $launcher 2>/dev/null || break
    [ "$(date +%s)" -lt $((deadline + 60)) ] || { kill $launcher; fail "$name: no restart"; }
    sleep 0.02
  done
  local t_back; t_back=$(now)
  wait $launcher; local rc=$?
  [ "$rc" -eq 0 ] || { tail -40 "$run/launch.txt"; fail "$name: colossus-launch exit $rc"; }
  grep -q "restart 1 of 2" "$run/launch.txt" || { cat "$run/launch.txt"; fail "$name: no restart reported"; }
  ! grep -q "restart 2 of 2" "$run/launch.txt" || { cat "$run/launch.txt"; fail "$name: more than one restart"; }
  grep -i "rank 1" "$run/launch.txt" | grep -qiE "$4" \
    || { cat "$run/launch.txt"; fail "$name: the reason does not name rank 1 ($4)"; }
  grep -q "resumed from step" "$run/launch.txt" || { cat "$run/launch.txt"; fail "$name: no resume reported"; }
  cmp -s "$WORK/ref/model.safetensors" "$run/out/model.safetensors" \
    || fail "$name: final weights differ from the run without failure"
  local resumed; resumed=$(grep -o "resumed from step [0-9]*" "$run/launch.txt" | head -1)
  /usr/bin/python3 -c 'import sys; print("%s: SIG%s at step %s (seen %s), %s; failure -> first step after restart: %.2f s" % tuple(sys.argv[1:6] + [float(sys.argv[7]) - float(sys.argv[6])]))' \
    "$name" "$sig" "$at" "$seen" "$resumed" "$t_fail" "$t_back"
}

for seed in "${SEEDS[@]}"; do
  at=$(( 60 + (seed * 97) % 240 ))  # a seeded "random" step in [60, 300)
  run_with_failure "kill$seed" KILL "$at" "signal 9|killed"
done
run_with_failure hang STOP 120 "hang|stuck|step has not moved|no progress"
echo PASS
