#!/usr/bin/env bash
# Issue 13, item 5: the command line's time outside sampling on 784-D data (wall time of
# `noisescope sample` minus run.json's timings.sampling_s), two binaries alternating.
# Usage: tools/cli_overhead.sh BIN_A BIN_B DATA.npy [RUNS]
#   DATA.npy: an [N, D] array, e.g. numpy.random.default_rng(0).random((10000, 784), 'f4').
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 BIN_A BIN_B DATA.npy [RUNS]" >&2; exit 2; }
A=$1; B=$2; DATA=$3; RUNS=${4:-2}
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads"
for i in $(seq "$RUNS"); do
  for bin in "$A" "$B"; do
    start=$(date +%s.%N)
    "$bin" sample --data "npy:$DATA" --batch 64 --steps 18 --diagnostics off --out "$OUT/run" > /dev/null
    end=$(date +%s.%N)
    python3 -c "import json, sys; w = $end - $start; t = json.load(open('$OUT/run/run.json'))['timings']['sampling_s']; print(f'$bin run $i: wall {w:.2f} s, sampling {t:.2f} s, outside sampling {w - t:.2f} s')"
  done
done
