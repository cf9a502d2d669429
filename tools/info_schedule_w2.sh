#!/usr/bin/env bash
# Issue 12's sampling comparison on moons: the info schedule (equal quantiles of the exact
# information profile) against Karras and the tangent law at N = 6, 8, 12, Heun and Euler, by the
# sliced W2 of the samples against the data (run.json's quality), the mean and spread over SEEDS.
# Usage: tools/info_schedule_w2.sh [BIN] (env: SEEDS, BATCH, DATA)
set -euo pipefail
BIN=${1:-target/release/noisescope}
SEEDS=${SEEDS:-"1 2 3 4 5"}
BATCH=${BATCH:-4096}
DATA=${DATA:-toy:moons}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "| $DATA | N | karras W2 | tangent W2 | info W2 |"
echo "|---|---:|---:|---:|---:|"
for sampler in heun euler; do
  for n in 6 8 12; do
    line="| $sampler | $n |"
    for schedule in karras tangent info; do
      for seed in $SEEDS; do
        "$BIN" sample --data "$DATA" --sampler "$sampler" --schedule "$schedule" --steps "$n" \
          --batch "$BATCH" --seed "$seed" --diagnostics off --out "$TMP/$schedule-$seed" >/dev/null
      done
      line+=" $(python3 - "$TMP" "$schedule" $SEEDS <<'PY'
import json, statistics, sys
tmp, schedule, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
w = [json.load(open(f"{tmp}/{schedule}-{s}/run.json"))["quality"]["sliced_w2"] for s in seeds]
print(f"{statistics.mean(w):.4f} ± {statistics.stdev(w) if len(w) > 1 else 0:.4f}", end="")
PY
) |"
    done
    echo "$line"
  done
done
