#!/usr/bin/env python3
# Issue 11: NAG's cost (w = 2 against w = 0, sampling_s of run.json) of two binaries interleaved run
# by run, so that load from elsewhere on a shared machine falls on both alike. Medians of RUNS
# after one warm-up round. Usage (under /work/tools/quiet on a shared machine):
#   python3 tools/nag_cost_ab.py BIN_A BIN_B [RUNS] [DATA]   (defaults: 15, toy:moons)
import json, statistics, subprocess, sys, tempfile

bins = {"A": sys.argv[1], "B": sys.argv[2]}
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 15
data = sys.argv[4] if len(sys.argv) > 4 else "toy:moons"
samp = {(b, w): [] for b in bins for w in (0, 2)}
with tempfile.TemporaryDirectory() as tmp:
    for i in range(runs + 1):
        for b, path in bins.items():
            for w in (0, 2):
                out = f"{tmp}/{b}-{w}"
                subprocess.run([path, "sample", "--data", data, "--nag", str(w), "--out", out],
                               check=True, stdout=subprocess.DEVNULL)
                if i > 0:  # the first round warms the caches
                    samp[(b, w)].append(json.load(open(f"{out}/run.json"))["timings"]["sampling_s"])
for b, path in bins.items():
    m0, m2 = statistics.median(samp[(b, 0)]), statistics.median(samp[(b, 2)])
    print(f"{data} {b} ({path}): sampling {m0:.3f} s -> {m2:.3f} s ({m2 / m0:.2f}x), "
          f"NAG's extra {m2 - m0:.3f} s")
