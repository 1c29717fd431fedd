# Shared by the end-to-end recovery scripts in this directory (sourced, not run):
# recovery_test.sh, elastic_test.sh, storage_fault_test.sh, and ../tp/tp_recovery_test.sh.
#
# Before sourcing, set TRAIN (the train_gpt binary, absolute) and WORK (the test's
# temporary directory, the current directory).
#
#   fail MESSAGE...               print FAIL: MESSAGE on stderr and exit 1
#   now                           seconds since the epoch, with nanoseconds
#   prepare_data SRC              byte-level shards of 100 KB of the demo corpus in $WORK/ds
#   status_step RUN GEN RANK      the step in RUN's status file of that rank, or -1
#   worker_pid RUN RANK           the pid of the train_gpt process of that rank of the job
#                                 whose run directory is RUN (any generation; "" if none)
#   wait_step RUN GEN RANK STEP PID SECONDS
#                                 waits until that rank reports STEP or more; fails when
#                                 process PID (the launcher or the coordinator) ends first
#                                 or after SECONDS
#   losses METRICS                "step loss" lines of a metrics.jsonl, in file order
#   latest_commit DIR             the newest step with a COMMIT.json under DIR (0: none)
#   signal_ranks RUN SIG RANK...  sends SIG to those ranks' train_gpt processes
#   wait_commit DIR STEP PID SECONDS   until latest_commit DIR >= STEP (fails as wait_step)

fail() { echo "FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }

prepare_data() {
  head -c 100000 "$1/examples/data/kjv-pentateuch.txt" > "$WORK/text.txt"
  "$DATA" encode --tokenizer byte --output "$WORK/ds" --val-fraction 0.1 "$WORK/text.txt" >/dev/null \
    || fail "colossus-data encode"
}

status_step() {
  /usr/bin/python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get("step", -1))
except Exception: print(-1)' "$1/status/gen$2/rank$3.json"
}

worker_pid() {
  local e p
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    { tr '\0' '\n' <"$e" | grep -qx "COLOSSUS_RUN_DIR=$1"; } 2>/dev/null || continue
    { tr '\0' '\n' <"$e" | grep -qx "RANK=$2"; } 2>/dev/null || continue
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$TRAIN" ] && { echo "$p"; return; }
  done
}

wait_step() {
  local run=$1 gen=$2 rank=$3 at=$4 pid=$5 deadline=$(( $(date +%s) + $6 ))
  while [ "$(status_step "$run" "$gen" "$rank")" -lt "$at" ]; do
    kill -0 "$pid" 2>/dev/null || fail "$run: the job ended before rank $rank of generation $gen reached step $at"
    [ "$(date +%s)" -lt "$deadline" ] || fail "$run: rank $rank of generation $gen never reached step $at"
    sleep 0.05
  done
}

losses() {
  /usr/bin/python3 -c 'import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "loss" in r and "step" in r: print(r["step"], repr(r["loss"]))' "$1"
}

# latest_commit DIR: the newest step under checkpoint DIR with a COMMIT.json (0 if none)
latest_commit() {
  local best=0 d s
  for d in "$1"/step-*/COMMIT.json; do
    [ -f "$d" ] || continue
    s=${d%/COMMIT.json}; s=${s##*/step-}
    case "$s" in *[!0-9]*) continue ;; esac
    s=$((10#$s)); [ "$s" -gt "$best" ] && best=$s
  done
  echo "$best"
}

# signal_ranks RUN SIG RANK...: sends SIG to those ranks' train_gpt processes
signal_ranks() {
  local run=$1 sig=$2 r p
  shift 2
  for r in "$@"; do p=$(worker_pid "$run" "$r"); [ -n "$p" ] && kill -"$sig" "$p"; done
}

# wait_commit DIR STEP PID SECONDS: until a step >= STEP is committed under DIR
wait_commit() {
  local deadline=$(( $(date +%s) + $4 ))
  while [ "$(latest_commit "$1")" -lt "$2" ]; do
    kill -0 "$3" 2>/dev/null || fail "the job ended before step $2 was committed in $1"
    [ "$(date +%s)" -lt "$deadline" ] || fail "step $2 was never committed in $1"
    sleep 0.02
  done
}
