#!/usr/bin/env python3
"""Issue 12's table from tools/infonoise_compare.sh's curves.csv: for each data set, metric and
seed, two targets from the log-normal run of that seed: its value half-way (the evaluation at half
the steps) and at the end (the mean of its last two evaluations, to damp the 500-sample noise of
W2 and accuracy); the steps each law needs to first reach them, and the log-normal / InfoNoise
ratio (> 1: InfoNoise gets there in fewer steps). Usage: infonoise_summary.py curves.csv"""
import csv
import statistics
import sys
from collections import defaultdict

METRICS = {  # column, better when lower
    "validation_loss": True,
    "sliced_w2": True,
    "class_accuracy": False,
}
QUALITY = {"toy:moons": "sliced_w2", "digits": "class_accuracy", "digits:binary": "class_accuracy"}

runs = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    runs[(r["data"], r["dist"], r["seed"])].append(r)


def first_step(rows, col, target, lower):
    for r in sorted(rows, key=lambda r: int(r["step"])):
        v = float(r[col]) if r[col] else float("nan")
        if (v <= target) if lower else (v >= target):
            return int(r["step"])
    return None


print("| data | metric | target | mean target | steps to reach it, log-normal (seeds 1, 2, 3) | InfoNoise | ratio per seed |")
print("|---|---|---|---:|---|---|---|")
for data in dict.fromkeys(d for d, _, _ in runs):
    seeds = sorted({s for d, _, s in runs if d == data})
    for col in ("validation_loss", QUALITY.get(data, "sliced_w2")):
        lower = METRICS[col]
        for kind in ("half-way", "end"):
            targets, s_ln, s_in, ratios = [], [], [], []
            for seed in seeds:
                ln, inf = runs.get((data, "lognormal", seed)), runs.get((data, "infonoise", seed))
                if not ln or not inf:
                    continue
                ln = sorted(ln, key=lambda r: int(r["step"]))
                inf = sorted(inf, key=lambda r: int(r["step"]))
                if kind == "end":
                    target = statistics.mean(float(r[col]) for r in ln[-2:])
                else:
                    half = int(ln[-1]["step"]) / 2
                    target = float(min(ln, key=lambda r: abs(int(r["step"]) - half))[col])
                a, b = first_step(ln, col, target, lower), first_step(inf, col, target, lower)
                targets.append(target)
                s_ln.append(str(a))
                s_in.append(str(b) if b else "not reached")
                ratios.append(f"{a / b:.2f}" if b else "< 1")
            if targets:
                print(f"| {data} | {col} | {kind} | {statistics.mean(targets):.4f} | "
                      f"{', '.join(s_ln)} | {', '.join(s_in)} | {', '.join(ratios)} |")
