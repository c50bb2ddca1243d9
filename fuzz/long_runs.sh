#!/bin/sh
# Run every fuzz target for SECONDS (default 1800) each, all at once at the lowest priority,
# restarting a target after a finding so it keeps its full time. Logs: fuzz/work/logs/.
# Usage: sh fuzz/long_runs.sh [SECONDS] [TARGET...]
cd "$(dirname "$0")/.." || exit 1
SECONDS_EACH=${1:-1800}
shift 2>/dev/null
TARGETS=${*:-"edge_head stream body sse json_array usage_filter config ingest"}
PY=${PYTHON:-python}
mkdir -p fuzz/work/logs
for target in $TARGETS; do
  (
    start=$(date +%s); end=$((start + SECONDS_EACH)); runs=0
    while [ "$(date +%s)" -lt "$end" ]; do
      left=$((end - $(date +%s)))
      runs=$((runs + 1))
      nice -n 19 "$PY" -m fuzz.run "$target" --seconds "$left" \
        >> "fuzz/work/logs/$target.log" 2>&1
      echo "run $runs exit $? at $(date -u +%FT%TZ)" >> "fuzz/work/logs/$target.log"
    done
    echo "$target: $(( $(date +%s) - start )) s wall" >> fuzz/work/logs/summary.txt
  ) &
done
wait
