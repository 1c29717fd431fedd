#!/usr/bin/env bash
# Nodes in their own network namespaces (PLATFORM.md): a colossus-coordinator in one,
# two node agents in two others, joined by a bridge. Cutting one agent's link off must
# get that node declared dead within the node timeout, and the elastic job (min_nodes 1)
# restarts with the survivor and completes; the cut-off agent gives up on the
# coordinator (exit 4) and takes its worker down.
#   netns_test.sh <colossus-launch> <colossus-coordinator> <test worker>
# Exit 77 (ctest: skipped) without the rights to make namespaces.
set -euo pipefail
LAUNCH=$1 COORD=$2 WORKER=$3
command -v ip >/dev/null || { echo "SKIP: no ip(8)"; exit 77; }

ID=$(printf '%04x' $((RANDOM % 65536)))
NS_C=clc_$ID NS_A=cla_$ID NS_B=clb_$ID BR=clbr_$ID
NET=10.$((RANDOM % 200 + 20)).$((RANDOM % 250)).
T=$(mktemp -d /tmp/colossus_netns_XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "$NS_C" "$NS_A" "$NS_B"; do ip netns del "$n" 2>/dev/null || true; done
  ip link del "$BR" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$T"/*.out "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -25 "$f"; }; done
  exit 1
}

if ! ip netns add "$NS_C" 2>/dev/null; then echo "SKIP: cannot create network namespaces here"; exit 77; fi
ip netns add "$NS_A"; ip netns add "$NS_B"
ip link add "$BR" type bridge; ip link set "$BR" up
i=1
for n in C A B; do
  ns_var=NS_$n; ns=${!ns_var}
  ip link add "v${n}_$ID" type veth peer name eth0 netns "$ns"
  ip link set "v${n}_$ID" master "$BR" up
  ip -n "$ns" addr add "${NET}$i/24" dev eth0
  ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up
  i=$((i + 1))
done
ADDR_C=${NET}1 ADDR_A=${NET}2 ADDR_B=${NET}3

echo "netns-test-token" > "$T/token"
ip netns exec "$NS_C" "$COORD" --job-id nsjob --listen "$ADDR_C:0" --run-dir "$T/job" \
  --token-file "$T/token" --min-nodes 1 --max-nodes 2 --settle-ms 3000 \
  --heartbeat-interval-ms 200 --node-timeout-ms 2000 --max-restarts 2 \
  > "$T/coordinator.out" 2> "$T/coordinator.log" &
COORD_PID=$!
PIDS+=($COORD_PID)
for i in $(seq 100); do grep -q "listening on" "$T/coordinator.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\) .*/\1/p' "$T/coordinator.out")
[ -n "$PORT" ] || fail "the coordinator did not start"

agent() {  # agent <name> <namespace> <address>
  ip netns exec "$2" "$LAUNCH" --agent --coordinator "$ADDR_C:$PORT" --job-id nsjob \
    --token-file "$T/token" --run-dir "$T/job" --node-id "$1" --address "$3" --workers 1 \
    --stop-grace 1s --keepalive 1s -- "$WORKER" --hold-generation 1 > "$T/agent-$1.out" 2>&1
}
agent a "$NS_A" "$ADDR_A" &
AGENT_A=$!
agent b "$NS_B" "$ADDR_B" &
AGENT_B=$!
PIDS+=($AGENT_A $AGENT_B)

for r in 0 1; do
  for i in $(seq 200); do [ -f "$T/job/workers/gen1.rank$r.pid" ] && break; sleep 0.1; done
  [ -f "$T/job/workers/gen1.rank$r.pid" ] || fail "rank $r of generation 1 never started"
done
grep -qx "COLOSSUS_NODE_ID=b" "$T/job/workers/gen1.rank1.env" || fail "rank 1 is not node b's"
read -r WORKER_B _ < "$T/job/workers/gen1.rank1.pid"

# Cut node b off.
ip link set "vB_$ID" down

wait "$COORD_PID" || fail "the coordinator exited with $? (the job did not succeed after the restart)"
grep -q "node b" "$T/coordinator.log" || fail "no event names node b"
grep -qi "dead\|silent\|lost" "$T/coordinator.log" || fail "node b was not declared dead"
[ -f "$T/job/workers/gen2.rank0.env" ] || fail "no generation 2"
grep -qx "WORLD_SIZE=1" "$T/job/workers/gen2.rank0.env" || fail "generation 2 is not the survivor alone"
grep -qx "COLOSSUS_NODE_ID=a" "$T/job/workers/gen2.rank0.env" || fail "generation 2 is not node a"
wait "$AGENT_A" || fail "agent a exited with $?"
set +e
wait "$AGENT_B"; CODE_B=$?
set -e
[ "$CODE_B" = 4 ] || fail "agent b exited with $CODE_B, expected 4 (coordinator unreachable)"
[ -d "/proc/$WORKER_B" ] && ! grep -q '^State:.*Z' "/proc/$WORKER_B/status" && fail "node b's worker $WORKER_B survived"
echo "PASS: node b cut off, declared dead, the job restarted on node a and completed"
