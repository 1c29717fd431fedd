#!/usr/bin/env bash
# colossus-launch --agent under Slurm: this test starts its own munged, slurmctld and
# slurmd (Debian's slurm-wlm, PLATFORM.md), a colossus-coordinator for two nodes, and
# `srun -N1 -n2 colossus-launch --agent --coordinator :PORT ...`: two agents on this
# machine take their identity from SLURM_* (node ids <host>-0 and <host>-1, the
# coordinator's host from SLURM_JOB_NODELIST) and the job completes.
#   slurm_test.sh <colossus-launch> <colossus-coordinator> <test worker>
# Exit 77 (ctest: skipped) where slurm-wlm or munge is not installed.
set -euo pipefail
LAUNCH=$1 COORD=$2 WORKER=$3
for b in slurmctld slurmd srun sinfo munged mungekey; do
  command -v "$b" >/dev/null || { echo "SKIP: $b is not installed (apt-get install slurm-wlm munge)"; exit 77; }
done

T=$(mktemp -d /tmp/colossus_slurm_XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$T"/*.log "$T"/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  exit 1
}

mkdir -p "$T/munge" "$T/run" "$T/state" "$T/spool"
# munged wants every directory above its socket searchable by all (mktemp makes 0700).
chmod 0755 "$T" "$T/run"; chmod 0700 "$T/munge"
mungekey -c -k "$T/munge/munge.key" >/dev/null 2>&1
munged -F --key-file="$T/munge/munge.key" --socket="$T/run/munge.sock" \
  --pid-file="$T/run/munged.pid" --log-file="$T/munged.log" --seed-file="$T/munge/seed" \
  > "$T/munged.out" 2>&1 &
PIDS+=($!)

HOST=$(hostname -s)
BASE=$((20000 + RANDOM % 20000))
cat > "$T/slurm.conf" <<CONF
ClusterName=colossus
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$BASE
SlurmdPort=$((BASE + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/run/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2
PartitionName=debug Nodes=ALL Default=YES State=UP
CONF
export SLURM_CONF=$T/slurm.conf
for i in $(seq 100); do [ -S "$T/run/munge.sock" ] && break; sleep 0.1; done
[ -S "$T/run/munge.sock" ] || fail "munged did not start"
slurmctld -D -f "$SLURM_CONF" > "$T/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" > "$T/slurmd.out" 2>&1 &
PIDS+=($!)
for i in $(seq 100); do
  [ "$(timeout 5 sinfo -h -o %T 2>/dev/null)" = idle ] && break
  sleep 0.2
done
[ "$(timeout 5 sinfo -h -o %T 2>/dev/null)" = idle ] || fail "slurm did not come up"

# The coordinator, on every address (agents reach it by this host's name).
echo "slurm-test-token" > "$T/token"
"$COORD" --job-id slurmjob --listen 0.0.0.0:0 --run-dir "$T/job" --token-file "$T/token" \
  --min-nodes 2 --max-nodes 2 --heartbeat-interval-ms 200 > "$T/coordinator.out" 2> "$T/coordinator.log" &
COORD_PID=$!
PIDS+=($COORD_PID)
for i in $(seq 100); do grep -q "listening on" "$T/coordinator.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\) .*/\1/p' "$T/coordinator.out")
[ -n "$PORT" ] || fail "the coordinator did not start"

# Two agents by srun; identity, node ids and the coordinator's host come from SLURM_*.
timeout 120 srun -N1 -n2 "$LAUNCH" --agent --coordinator ":$PORT" --job-id slurmjob \
  --token-file "$T/token" --run-dir "$T/job" -- "$WORKER" --steps 2 > "$T/srun.out" 2>&1 \
  || fail "srun exited with $?"
wait "$COORD_PID" || fail "the coordinator exited with $? (the job did not succeed)"

for r in 0 1; do
  env_file="$T/job/workers/gen1.rank$r.env"
  [ -f "$env_file" ] || fail "rank $r never ran"
  grep -qx "WORLD_SIZE=2" "$env_file" || fail "rank $r: WORLD_SIZE"
  grep -qx "GROUP_RANK=$r" "$env_file" || fail "rank $r: GROUP_RANK"
  grep -qx "COLOSSUS_NODE_ID=$HOST-$r" "$env_file" || fail "rank $r: node id $(grep COLOSSUS_NODE_ID "$env_file")"
  grep -q "^SLURM_PROCID=" "$env_file" || fail "rank $r: not started by srun"
done
grep -q "job succeeded" "$T/srun.out" || fail "the agents did not report success"
echo "PASS: srun ran two agents; the job completed"
