#!/usr/bin/env bash
# The README's training-speed figures in one sitting: the PyTorch twin and `noisescope
# bench-train` (fused, then candle stock), mlp then unet, release build, CPU named. Run it under
# the machine's exclusive lock when other jobs share the machine, e.g.
#     /work/tools/quiet tools/train_sitting.sh [path/to/noisescope]
# PYTHON: a python with torch and numpy (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${1:-target/release/noisescope}
PY=${PYTHON:-python3}
peer() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" tools/peer_train.py "$@"; }
date -u
uptime
grep -m1 "model name" /proc/cpuinfo
peer --model mlp --steps 300
"$NS" bench-train --model mlp --steps 300
peer --model mlp --steps 300
"$NS" bench-train --model mlp --steps 300
"$NS" bench-train --model mlp --steps 100 --stock
peer --model unet --steps 20 --windows 4 --warmup 3
"$NS" bench-train --model unet --steps 20 --windows 4 --warmup 3
peer --model unet --steps 20 --windows 4 --warmup 3
"$NS" bench-train --model unet --steps 20 --windows 4 --warmup 3
"$NS" bench-train --model unet --steps 4 --windows 2 --warmup 1 --stock
uptime
