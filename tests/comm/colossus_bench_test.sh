#!/usr/bin/env bash
# colossus-bench end to end on Gloo: 3 local processes, check mode. Asserts the exit
# status, a #wrong of 0 in every cell of every row, the "# Avg bus bandwidth" line,
# and the JSON (same rows, wrong_total 0).
#   colossus_bench_test.sh <colossus-bench>
set -euo pipefail
bench=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bench" --backend gloo --nproc 3 -b 1K -e 1M -f 4 -c 1 -n 2 -w 1 --json "$tmp/out.json" \
  --timeout 60 | tee "$tmp/out.txt"
fail() { echo "FAIL: $*" >&2; exit 1; }
grep -Eq '^# Avg bus bandwidth    : [0-9.e+-]+' "$tmp/out.txt" || fail "no Avg bus bandwidth line"
# Data rows: size count type redop root, then (time algbw busbw #wrong) x 2.
rows=$(grep -Ev '^#' "$tmp/out.txt" | awk 'NF == 13')
[ "$(echo "$rows" | wc -l)" -eq 6 ] || fail "expected 6 rows (1K..1M by 4)"
echo "$rows" | awk '$9 != "0" || $13 != "0" { bad = 1 } END { exit bad }' \
  || fail "#wrong is not 0 everywhere"
echo "$rows" | awk '$8 <= 0 && $1 >= 65536 { bad = 1 } END { exit bad }' \
  || fail "a busbw of 0 at 64K or more"
python3 - "$tmp/out.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["op_name"] == "all_reduce" and j["backend"] == "gloo" and j["nranks"] == 3, j
assert j["wrong_total"] == 0 and len(j["rows"]) == 6, j
assert [r["size"] for r in j["rows"]] == [1020, 4092, 16380, 65532, 262140, 1048572] or \
       [r["size"] for r in j["rows"]] == [1024 * 4**k for k in range(6)], [r["size"] for r in j["rows"]]
for r in j["rows"]:
    for p in ("out_of_place", "in_place"):
        assert r[p]["wrong"] == 0 and r[p]["time_us"] > 0, r
assert j["avg_busbw_gbps"] > 0, j
PY
echo PASS
