#!/usr/bin/env bash
# The coordinator's scale figures (issue 8, "Scale"): colossus-coordinator-load at
# 1,250, 12,500 and 25,000 agents x 8 ranks on this machine, one after another.
#
#   bench/coordinator/run_scale_bench.sh [BUILD_DIR]      (default build/release)
#
# Environment: HEARTBEAT_S_SMALL (1,250 agents; default 20), HEARTBEAT_S (12,500; 60),
# HEARTBEAT_S_LARGE (25,000; 20), AGENTS ("1250 12500 25000"), EXTRA (more flags for
# colossus-coordinator-load, e.g. "--cq-threads 16").
# Prints each run's table and JSON line, then the JSON lines together at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../../build/release}"
load="$build/bench/coordinator/colossus-coordinator-load"
coordinator="$build/launcher/coordinator/colossus-coordinator"
for f in "$load" "$coordinator"; do
  [[ -x "$f" ]] || { echo "run_scale_bench.sh: $f is missing (build colossus-coordinator-load and colossus-coordinator)" >&2; exit 2; }
done

results=()
for n in ${AGENTS:-1250 12500 25000}; do
  case "$n" in
    12500) hb="${HEARTBEAT_S:-60}" ;;
    25000) hb="${HEARTBEAT_S_LARGE:-20}" ;;
    *)     hb="${HEARTBEAT_S_SMALL:-20}" ;;
  esac
  echo "== $n agents, heartbeats ${hb} s: $load --agents $n --heartbeat-s $hb --coordinator $coordinator ${EXTRA:-}"
  # Let the previous run's sockets leave TIME_WAIT's port range pressure behind.
  sleep 2
  out="$("$load" --agents "$n" --heartbeat-s "$hb" --coordinator "$coordinator" ${EXTRA:-} 2>&1)" || true
  echo "$out"
  results+=("$(echo "$out" | grep '^{' | tail -1)")
done
echo "== JSON"
printf '%s\n' "${results[@]}"
