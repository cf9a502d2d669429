#!/usr/bin/env bash
# Issue 9's README table: exact vs learned (bundled) denoisers on the same noise (same seed), for
# moons and digits. Prints one markdown row per data x denoiser. Usage: tools/learned_table.sh [BIN]
# Late delta: the median over the last three steps of each step's median delta = ln sigma_hat - ln sigma.
set -euo pipefail
BIN=${1:-target/release/noisescope}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
B=500
python3 - "$TMP" "$B" <<'PY'
import struct, sys
# classes round-robin as .npy int64 [B] for moons (2) and digits (10)
def npy(path, values):
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }" % len(values)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%dq" % len(values), *values))
tmp, b = sys.argv[1], int(sys.argv[2])
npy(f"{tmp}/moons.npy", [i % 2 for i in range(b)])
npy(f"{tmp}/digits.npy", [i % 10 for i in range(b)])
PY
run() { # data denoiser name extra-args...
  local data=$1 den=$2 name=$3; shift 3
  "$BIN" sample --data "$data" --denoiser "$den" --batch $B --seed 7 --out "$TMP/$name" "$@" >/dev/null
}
late() { python3 -c "
import csv,statistics,sys
rows=list(csv.DictReader(open('$1/diagnostics.csv')))
print('%+.3f' % statistics.median(float(r['delta_median']) for r in rows[-3:]))"; }
q() { python3 -c "
import json; q=json.load(open('$1/run.json'))['quality']; print('%s' % ('%.4f' % q['$2'] if q['$2'] is not None else '-'))" | sed 's/^\(0\.[0-9]*\)$/\1/'; }
echo "| data | denoiser | late delta Heun 8 | Heun 18 | Euler 8 | EDM churn 40 (18) | sliced W2 | MMD | class acc. CFG 1 | CFG 2 | CFG 4 |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for data in moons digits; do
  spec=$data; [ $data = moons ] && spec=toy:moons
  for den in exact bundled:$data; do
    k=${data}_${den#bundled:}
    cls=(--class "$TMP/$data.npy")
    run $spec $den ${k}_h8 --sampler heun --steps 8 "${cls[@]}"
    run $spec $den ${k}_h18 --sampler heun --steps 18 "${cls[@]}"
    run $spec $den ${k}_e8 --sampler euler --steps 8 "${cls[@]}"
    run $spec $den ${k}_edm --sampler edm --steps 18 --churn 40 "${cls[@]}"
    run $spec $den ${k}_c2 --sampler heun --steps 18 --cfg 2 "${cls[@]}"
    run $spec $den ${k}_c4 --sampler heun --steps 18 --cfg 4 "${cls[@]}"
    echo "| $data | $den | $(late $TMP/${k}_h8) | $(late $TMP/${k}_h18) | $(late $TMP/${k}_e8) | $(late $TMP/${k}_edm) | $(q $TMP/${k}_h18 sliced_w2) | $(q $TMP/${k}_h18 mmd) | $(q $TMP/${k}_h18 class_accuracy) | $(q $TMP/${k}_c2 class_accuracy) | $(q $TMP/${k}_c4 class_accuracy) |"
  done
done
