#!/usr/bin/env bash
set -x
date -u; uptime; grep -m1 'model name' /proc/cpuinfo
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/peer/bin/python /work/shared/tools/peer_bench.py --repeat 5
/work/bench/ns-main bench --backend cpu --repeats 9
/work/bench/ns-new bench --backend cpu --repeats 9
cd /work/main
python3 tools/nag_cost_ab.py /work/bench/ns-main /work/bench/ns-new 7 toy:moons
python3 tools/nag_cost_ab.py /work/bench/ns-main /work/bench/ns-new 5 digits
bash tools/cli_overhead.sh /work/bench/ns-main /work/bench/ns-new /tmp/ovh/img.npy 2
date -u
