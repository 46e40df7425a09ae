#!/usr/bin/env bash
# Train the α family with one recipe and an equal number of steps, all at once on one machine,
# inside a fixed wall-time budget (minutes on a GPU, or a night on a CPU).
#
#   training/family.sh DATA_ROOT OUT_DIR BUDGET_SECONDS [ALPHA ...]     (default α: 1 0.5 0.25 0.1)
#
# 1. Calibrate: 60 steps of every α side by side (also a smoke test of the whole path).
# 2. Pick N = the steps the slowest α manages in what is left of the budget (x 0.85, in 100s,
#    at most the config's steps), so every cosine schedule runs to its end and every α gets
#    the same N: "equal steps", the fair comparison for the α table.
# 3. Train all of them to N (--time-limit-min as a backstop), then write OUT_DIR/summary.txt.
# Env: PYTHON (default python3), CONFIG (configs/default.toml), EXTRA (more `stylebox train`
# arguments, e.g. "--set max_photos=16 --image-size 64" for a quick try).
set -u
DATA=$1; OUT=$2; BUDGET=$3; shift 3
ALPHAS=${*:-1 0.5 0.25 0.1}
PY=${PYTHON:-python3}
CONFIG=${CONFIG:-configs/default.toml}
EXTRA=${EXTRA:-}
T0=$(date +%s)
mkdir -p "$OUT"

train() {  # alpha out_dir steps [more args]
  local a=$1 dir=$2 steps=$3; shift 3
  # shellcheck disable=SC2086
  $PY -m stylebox train --config "$CONFIG" --out "$dir" --data-root "$DATA" --alpha "$a" \
    --steps "$steps" --no-progress --no-resume $EXTRA "$@" > "$dir.log" 2>&1
}

for a in $ALPHAS; do train "$a" "$OUT/cal-a$a" 60 --log-every 10 --ckpt-every 1000 & done
wait
# steps/s of the slowest α over its last windows (the first ones hold cuDNN's autotuning)
RATE=$($PY - "$OUT" $ALPHAS <<'EOF'
import csv, statistics, sys
out, alphas = sys.argv[1], sys.argv[2:]
rates = []
for a in alphas:
    try:
        rows = list(csv.DictReader(open(f"{out}/cal-a{a}/log.csv")))
    except OSError:
        sys.exit(f"calibration of alpha {a} failed: see {out}/cal-a{a}.log")
    r = statistics.median(float(x["steps_per_s"]) for x in rows[-3:])
    print(f"alpha {a}: {r:.2f} steps/s side by side", file=sys.stderr)
    rates.append(r)
print(min(rates))
EOF
) || { tail -n 30 "$OUT"/cal-*.log; exit 1; }

CFG_STEPS=$($PY -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['train']['steps'])" "$CONFIG")
LEFT=$(( BUDGET - ($(date +%s) - T0) - 30 ))  # 30 s: start-up (VGG, photos) and the last save
N=$($PY -c "import sys; r,l,c=float(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]); \
print(max(100, min(c, int(r * l * 0.85) // 100 * 100)))" "$RATE" "$LEFT" "$CFG_STEPS")
LIMIT=$($PY -c "print(round(max(1, $LEFT) / 60, 2))")
echo "family: $N steps for each alpha ($ALPHAS), slowest $RATE steps/s, ${LEFT}s left"

for a in $ALPHAS; do
  train "$a" "$OUT/a$a" "$N" --time-limit-min "$LIMIT" --log-every 50 --ckpt-every 1000 &
done
wait
{
  echo "steps per alpha: $N (calibrated slowest rate $RATE steps/s, budget ${BUDGET}s)"
  for a in $ALPHAS; do echo "alpha $a: $(tail -n 1 "$OUT/a$a.log")"; done
  echo "wall: $(( $(date +%s) - T0 )) s"
} | tee "$OUT/summary.txt"
