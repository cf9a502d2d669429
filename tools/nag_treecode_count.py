# Issue 11, NAG's cost on the 2-D toys: would a Barnes-Hut treecode beat the direct table?
# Counts, per row, the interactions (accepted quadtree cells + points taken one by one) a treecode
# over the moons' 4096 points needs at opening angle theta = (cell half-diagonal) / (distance from
# the row to the cell's centre), for rows at noise level sigma, against the 4096 points the table
# path reads. NAG's marginal weight falls as d^-p, p = (D + m)/2 = 2 (D = 2, m = 2), so a cell's
# Taylor expansion in d about its centre leaves a relative error of |binom(-p, K+1)| (2 theta)^(K+1)
# after order K: 32 theta^3 (K = 2; 1e-5 needs theta <= 0.007), 80 theta^4 (K = 3; theta <= 0.019).
# Usage: /tmp/peer/bin/python tools/nag_treecode_count.py (any python with numpy; the toy is drawn
# as src/data/toys.rs draws moons; the rows are data points plus sigma times normal noise).
import numpy as np
rng = np.random.default_rng(0)
n = 4096
t = rng.uniform(0, np.pi, n); lab = rng.integers(0, 2, n)
x = np.where(lab == 0, np.cos(t), 1 - np.cos(t)); y = np.where(lab == 0, np.sin(t), 0.5 - np.sin(t))
pts = np.stack([1.5 * (x - 0.5) + 0.05 * rng.normal(size=n), 1.5 * (y - 0.25) + 0.05 * rng.normal(size=n)], 1)

class Cell:
    __slots__ = ("c", "h", "idx", "kids")
def build(idx, lo, size):
    cell = Cell(); cell.c = lo + size / 2; cell.h = size * np.sqrt(2) / 2; cell.idx = idx; cell.kids = []
    if len(idx) > 1 and size > 1e-6:
        p = pts[idx]
        for qx in (0, 1):
            for qy in (0, 1):
                m = ((p[:, 0] >= lo[0] + size / 2) == bool(qx)) & ((p[:, 1] >= lo[1] + size / 2) == bool(qy))
                if m.any():
                    cell.kids.append(build(idx[m], lo + size / 2 * np.array([qx, qy]), size / 2))
    return cell
lo = pts.min(0) - 1e-9; size = (pts.max(0) - lo).max() + 1e-9
root = build(np.arange(n), lo, size)
def count(cell, row, theta):
    r = np.linalg.norm(row - cell.c)
    if len(cell.idx) == 1: return 1
    if r > 0 and cell.h / r <= theta: return 1
    return sum(count(k, row, theta) for k in cell.kids)
for sigma in (0.02, 0.2, 1.0, 5.0, 40.0):
    rows = pts[rng.integers(0, n, 24)] + sigma * rng.normal(size=(24, 2))
    line = [f"sigma {sigma:>5}:"]
    for theta in (0.007, 0.02, 0.05, 0.1, 0.2):
        line.append(f"theta {theta}: {np.median([count(root, r, theta) for r in rows]):.0f}")
    print("  ".join(line))
