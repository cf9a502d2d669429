#!/usr/bin/env python3
# Issue 13: sampling and diagnostics time (run.json's timings) of several binaries, interleaved run
# by run so that load from elsewhere on a shared machine falls on all alike. Medians of RUNS after
# one warm-up round. Usage (under /work/tools/quiet on a shared machine):
#   python3 tools/diag_cost_ab.py BIN_A,BIN_B[,...] RUNS SAMPLE_ARGS...
#   e.g. python3 tools/diag_cost_ab.py /tmp/main,/tmp/new 5 --data digits --batch 256
import json, statistics, subprocess, sys, tempfile

bins = sys.argv[1].split(",")
runs = int(sys.argv[2])
args = sys.argv[3:]
sampling = {b: [] for b in bins}
diagnostics = {b: [] for b in bins}
with tempfile.TemporaryDirectory() as tmp:
    for i in range(runs + 1):
        for b in bins:
            subprocess.run([b, "sample", *args, "--out", tmp], check=True, stdout=subprocess.DEVNULL)
            if i > 0:  # the first round warms the caches
                t = json.load(open(f"{tmp}/run.json"))["timings"]
                sampling[b].append(t["sampling_s"])
                diagnostics[b].append(t["diagnostics_s"])
for b in bins:
    print(f"{b}: sampling {statistics.median(sampling[b]):.4f} s, "
          f"diagnostics {statistics.median(diagnostics[b]):.4f} s")
