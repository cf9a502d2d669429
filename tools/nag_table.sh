#!/usr/bin/env bash
# Issue 11's README table: NAG w in {0, 1, 2, 3} in each form on the bundled learned models (moons,
# digits), Heun 18 and EDM churn 40 (18 steps), without CFG and with CFG 2 (classes round-robin).
# One markdown row per data x sampler x CFG x form x step x w: late delta (median over the last three
# steps of each step's median ln sigma_hat - ln sigma, exact posterior of the data), the pooled
# late delta (ln of the pooled ML sigma_hat over sigma, same steps), sliced W2, class accuracy and
# the mean distance to the nearest training point (0: the samples are copies of the data) from
# run.json. Usage: tools/nag_table.sh [BIN] [BATCH]
# With EST_moons=PATH and/or EST_digits=PATH (estimator checkpoints from `noisescope train
# --estimator`), a fourth form per w: classifier-based NAG, D + w sigma^2 grad_x ln g(sigma | x).
# FORMS="..." runs only those forms (w = 0, the plain run, always); MODEL_moons / MODEL_digits
# replace the bundled model of that data set (any --denoiser value); DATA="moons" runs one set.
# STEP="exponential explicit" (the default: both) is passed as --nag-step, one row per step
# ("step" column; "-" at w = 0, where NAG is off; classifier-based NAG is always explicit).
set -euo pipefail
BIN=${1:-target/release/noisescope}
B=${2:-256}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 - "$TMP" "$B" <<'PY'
import struct, sys
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
row() { python3 - "$1" <<'PY'
import csv, json, math, statistics, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f"{d}/diagnostics.csv")))[-3:]
late = statistics.median(float(r["delta_median"]) for r in rows)
pooled = statistics.median(math.log(float(r["sigma_hat_pooled"]) / float(r["sigma"])) for r in rows)
q = json.load(open(f"{d}/run.json"))["quality"]
f = lambda v: "-" if v is None else ("%.4f" % v if abs(v) < 1e4 else "%.1e" % v)
print("%+.3f | %+.3f | %s | %s | %s" % (late, pooled, f(q.get("sliced_w2")), f(q.get("class_accuracy")),
                                       f(q.get("nearest_distance"))))
PY
}
echo "| data | sampler | CFG | form | step | w | late delta | pooled late delta | sliced W2 | class acc. | nearest |"
echo "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|"
for data in ${DATA:-moons digits}; do
  spec=$data; [ $data = moons ] && spec=toy:moons
  for sampler in heun edm; do
    extra=(--sampler $sampler --steps 18); [ $sampler = edm ] && extra+=(--churn 40)
    for cfg in 1 2; do
      for w in 0 1 2 3; do
        est_var=EST_$data
        read -r -a forms <<< "${FORMS:-posterior-average exact-score learned classifier}"
        [ $w = 0 ] && forms=(posterior-average)
        for form in "${forms[@]}"; do
          [ $form = classifier ] && [ -z "${!est_var:-}" ] && continue
          read -r -a steps <<< "${STEP:-exponential explicit}"
          [ $w = 0 ] && steps=(-)
          [ $form = classifier ] && steps=(explicit)
          for step in "${steps[@]}"; do
            name=${data}_${sampler}_${cfg}_${form}_${step}_$w
            if [ $form = classifier ]; then nag=(--nag-estimator "${!est_var}"); else nag=(--nag-form $form); fi
            [ $step = - ] || [ $form = classifier ] || nag+=(--nag-step $step)
            model_var=MODEL_$data
            label="| $data | $sampler | $cfg | $([ $w = 0 ] && echo "-" || echo $form) | $step | $w |"
            if "$BIN" sample --data $spec --denoiser "${!model_var:-bundled:$data}" --batch $B --seed 7 \
                --class "$TMP/$data.npy" --cfg $cfg --nag $w "${nag[@]}" "${extra[@]}" \
                --out "$TMP/$name" >/dev/null 2>"$TMP/$name.err"; then
              echo "$label $(row "$TMP/$name") |"
            else
              echo "$label failed: $(tail -1 "$TMP/$name.err") | | | | |"
            fi
          done
        done
      done
    done
  done
done
