#!/usr/bin/env bash
# One timing sitting for issues 11 and 13 (run it under the machine's measurement lock, nothing
# else running): the PyTorch peer first, then both binaries' engine bench, NAG's cost on moons and
# digits (interleaved), and the command line's time outside sampling on 784-D data.
# Usage: tools/sitting.sh MAIN_BIN NEW_BIN DATA784.npy   (peer: /tmp/peer, see peer_bench.py)
set -euxo pipefail
[ $# -eq 3 ] || { echo "usage: $0 MAIN_BIN NEW_BIN DATA784.npy" >&2; exit 2; }
MAIN=$1; NEW=$2; DATA=$3
cd "$(dirname "$0")/.."
date -u; uptime; grep -m1 'model name' /proc/cpuinfo
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/peer/bin/python ../shared/tools/peer_bench.py --repeat 5
"$MAIN" bench --backend cpu --repeats 9
"$NEW" bench --backend cpu --repeats 9
python3 tools/nag_cost_ab.py "$MAIN" "$NEW" 7 toy:moons
python3 tools/nag_cost_ab.py "$MAIN" "$NEW" 5 digits
bash tools/cli_overhead.sh "$MAIN" "$NEW" "$DATA" 2
date -u
