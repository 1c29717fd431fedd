#!/usr/bin/env bash
# The coordinator's scale figures (issue 8, "Scale"): colossus-coordinator-load at
# 1,250, 12,500 and 25,000 agents x 8 ranks on this machine, one run after another, plus
# one 12,500-agent run without the NCCL-id phase (--phases ac) so that the heartbeat
# phase's memory is not the 100,000 held waits' before it. Each run with phase (b) times
# the NCCL id twice, side by side: direct (every rank waits at the coordinator) and
# relayed (one wait per agent through node relays, a sample of them real StoreRelays
# with 8 real local clients, plus quiet trials of the local hop).
#
#   bench/coordinator/run_scale_bench.sh [BUILD_DIR]      (default build/release)
#
# Environment: HEARTBEAT_S (12,500 agents; default 60), HEARTBEAT_S_OTHER (1,250 and
# 25,000; default 20), RUNS ("1250 12500 12500ac 25000"), EXTRA (more flags for
# colossus-coordinator-load, e.g. "--coordinator-arg=--cq-threads=8").
# Prints each run's table and JSON line, then all JSON lines together. Exit status 1 if
# any run reported a failed call or a wrong answer (missed targets do not count).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../../build/release}"
load="$build/bench/coordinator/colossus-coordinator-load"
coordinator="$build/launcher/coordinator/colossus-coordinator"
for f in "$load" "$coordinator"; do
  [[ -x "$f" ]] || { echo "run_scale_bench.sh: $f is missing (build colossus-coordinator-load and colossus-coordinator)" >&2; exit 2; }
done

status=0
results=()
for run in ${RUNS:-1250 12500 12500ac 25000}; do
  n="${run%ac}"
  phases=abc
  [[ "$run" == *ac ]] && phases=ac
  hb="${HEARTBEAT_S_OTHER:-20}"
  [[ "$n" == 12500 ]] && hb="${HEARTBEAT_S:-60}"
  cmd=("$load" --agents "$n" --heartbeat-s "$hb" --phases "$phases" --coordinator "$coordinator")
  echo "== $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg): ${cmd[*]} ${EXTRA:-}"
  # shellcheck disable=SC2086  # EXTRA is a list of flags
  out="$("${cmd[@]}" ${EXTRA:-} 2>&1)" || status=1
  echo "$out"
  results+=("$(echo "$out" | grep '^{' | tail -1)")
  # Let the previous run's connections leave TIME_WAIT before the next fills the port range.
  sleep 5
done
echo "== JSON"
printf '%s\n' "${results[@]}"
exit $status
