#!/usr/bin/env bash
# launch_local.sh: runs a program as N data-parallel ranks on this machine, the way
# torchrun does: each process gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
# MASTER_ADDR and MASTER_PORT; rank 0 serves the rendezvous store on MASTER_PORT.
# (colossus-launch, with a coordinator and restarts, is the real launcher.)
#
#   examples/train_gpt/launch_local.sh -n 2 -- build/release/examples/train_gpt \
#       --config examples/configs/demo.yaml --threads 1
#
# Rank 0's output goes to the terminal; rank r's to <log dir>/rank<r>.log (default
# $TMPDIR/colossus-launch-<pid>/), also prefixed "[rank r]" on the terminal with -v.
# If any rank fails, the others are stopped; the exit code is the first failure's.
# MASTER_PORT from the environment is used if set, else a free port.
set -u
usage() { echo "usage: $0 -n NPROC [-v] [--logs DIR] -- PROGRAM [ARGS...]" >&2; exit 2; }
nproc=""; verbose=0; logs=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) nproc="$2"; shift 2 ;;
    -v) verbose=1; shift ;;
    --logs) logs="$2"; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ -n "$nproc" ] && [ "$nproc" -ge 1 ] 2>/dev/null && [ $# -ge 1 ] || usage
logs="${logs:-${TMPDIR:-/tmp}/colossus-launch-$$}"
mkdir -p "$logs"

port="${MASTER_PORT:-}"
if [ -z "$port" ]; then
  # Ask the kernel for a free port (the window until rank 0 binds it is small).
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 29500)
fi

pids=()
for ((r = 0; r < nproc; r++)); do
  if [ "$r" -eq 0 ]; then
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=$nproc LOCAL_WORLD_SIZE=$nproc MASTER_ADDR=127.0.0.1 \
      MASTER_PORT=$port "$@" &
  elif [ "$verbose" -eq 1 ]; then
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=$nproc LOCAL_WORLD_SIZE=$nproc MASTER_ADDR=127.0.0.1 \
      MASTER_PORT=$port "$@" > >(tee "$logs/rank$r.log" | sed "s/^/[rank $r] /") 2>&1 &
  else
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=$nproc LOCAL_WORLD_SIZE=$nproc MASTER_ADDR=127.0.0.1 \
      MASTER_PORT=$port "$@" > "$logs/rank$r.log" 2>&1 &
  fi
  pids+=($!)
done

stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap 'stop_all; exit 130' INT TERM

# Wait for the ranks in the order they end; the first failure stops the rest.
status=0
live=("${pids[@]}")
while [ "${#live[@]}" -gt 0 ]; do
  ended=""
  wait -n -p ended "${live[@]}"
  rc=$?
  [ -n "$ended" ] || break
  rest=()
  for p in "${live[@]}"; do [ "$p" != "$ended" ] && rest+=("$p"); done
  live=("${rest[@]+"${rest[@]}"}")
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$rc
    echo "launch_local: a rank exited with code $rc; stopping the others (logs: $logs)" >&2
    stop_all
  fi
done
exit "$status"
