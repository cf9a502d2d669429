#!/usr/bin/env bash
# Issue 11: the cost of a NAG run against a plain one (goal <= 2.5x: two evaluations per step).
# Release binary, exact denoiser, default NAG form, w = 2, the CLI's defaults otherwise (batch 256,
# Heun 18, diagnostics on). Per data set: the wall time of the whole command and the sampling time
# alone (run.json's timings.sampling_s: diagnostics excluded), medians of RUNS alternating runs
# after one warm-up each. Usage: tools/nag_cost.sh [BIN] [RUNS] (under /work/tools/quiet when the
# machine is shared).
set -euo pipefail
BIN=${1:-target/release/noisescope}
RUNS=${2:-5}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads"
python3 - "$BIN" "$RUNS" <<'PY'
import json, statistics, subprocess, sys, tempfile, time
bin_, runs = sys.argv[1], int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    for data in ("digits", "toy:moons"):
        wall, samp = {0: [], 2: []}, {0: [], 2: []}
        for i in range(runs + 1):
            for w in (0, 2):
                out = f"{tmp}/{w}"
                t = time.perf_counter()
                subprocess.run([bin_, "sample", "--data", data, "--nag", str(w), "--out", out],
                               check=True, stdout=subprocess.DEVNULL)
                dt = time.perf_counter() - t
                if i > 0:  # the first round warms the caches
                    wall[w].append(dt)
                    samp[w].append(json.load(open(f"{out}/run.json"))["timings"]["sampling_s"])
        m = lambda v: statistics.median(v)
        print(f"{data}: wall {m(wall[0]):.3f} s -> {m(wall[2]):.3f} s ({m(wall[2]) / m(wall[0]):.2f}x); "
              f"sampling {m(samp[0]):.3f} s -> {m(samp[2]):.3f} s ({m(samp[2]) / m(samp[0]):.2f}x)")
PY
