#!/usr/bin/env bash
# The README's sweep tables: runs every built-in sweep (`noisescope sweep --builtin NAME`) and
# prints each as a markdown table (rows: the first varied setting; columns: the second; cells:
# each metric, and NFE where the step count varies), with the sweep's wall time.
# usage: tools/sweep_tables.sh [NOISESCOPE_BINARY] [OUT_DIR]   (default: target/release/noisescope)
set -euo pipefail
bin=${1:-target/release/noisescope}
out=${2:-$(mktemp -d)}
# SWEEPS="nag-moons rho-moons" runs only those.
read -r -a names <<<"${SWEEPS:-samplers-moons samplers-digits rho-moons churn-exact-vs-learned schedules-gaussian cfg-digits nag-moons}"
for name in "${names[@]}"; do
  start=$(date +%s.%N)
  "$bin" sweep --builtin "$name" --out "$out/$name" 2>/dev/null >/dev/null
  end=$(date +%s.%N)
  echo "### $name ($(python3 -c "print(f'{$end - $start:.1f}')") s)"
  echo
  python3 - "$out/$name/sweep.csv" "$out/$name/sweep.json" <<'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
spec = json.load(open(sys.argv[2]))
axes = [a["param"] for a in spec["vary"]]
metrics = spec["metrics"]
first = axes[0]
second = axes[1] if len(axes) > 1 else None
firsts = list(dict.fromkeys(r[first] for r in rows))
seconds = list(dict.fromkeys(r[second] for r in rows)) if second else [None]
def cell(r):
    values = []
    for m in metrics:
        v = r[m]
        values.append(f"{float(v):.4f}" if v else "n/a")
    text = " / ".join(values)
    if first == "steps":
        text += f" ({r['evaluations']} NFE)"
    return text
head = [first] + [f"{second}={s}" if second else "value" for s in seconds]
print(f"cells: {' / '.join(metrics)}")
print()
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for f in firsts:
    line = [f]
    for s in seconds:
        match = [r for r in rows if r[first] == f and (second is None or r[second] == s)]
        line.append(cell(match[0]) if match else "")
    print("| " + " | ".join(line) + " |")
print()
EOF
done
