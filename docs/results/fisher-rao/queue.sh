#!/usr/bin/env bash
# The committed grid of `boltzflow reproduce fisher-rao`, one cell per process in a fixed order (seed 0 of every
# (target, interpolation) first), niced, resumable (finished cells are skipped), then the aggregate call that writes
# results.json, table.md, figures/ and samples/. Usage, from the repository root:
#   nohup docs/results/fisher-rao/queue.sh > docs/results/fisher-rao/run/queue.log 2>&1 &
set -u
PY=${PY:-/work/main/.venv/bin/python}
OUT=${OUT:-docs/results/fisher-rao/run}
SEEDS=${SEEDS:-2}
# cut from the recipe's full scale to fit ~75 min on one shared core: 1500 steps (not 2500), 5e3 weighted samples
# (not 1e4), 50 RK4 steps (not 100), 1e3 speed samples (not 2e3), 2 seeds (not 3)
SETS=(--set training.steps=1500 --set evaluation.n_weights=5000 --set evaluation.ode_steps=50
      --set evaluation.n_speed=1000 --set seeds="$SEEDS")
export PYTHONPATH=${SRC:-$PWD/src}  # SRC: a frozen copy of src/ (the tree may change while it runs)
for seed in $(seq 0 $((SEEDS - 1))); do
  for target in gmm40 manywell8; do
    for interp in gradient_flow learned linear; do
      echo "$(date -u +%T) start $target/$interp/$seed load $(cut -d' ' -f1-3 /proc/loadavg)"
      nice -n 10 "$PY" -m boltzflow.cli reproduce fisher-rao --full "${SETS[@]}" --set only="$target/$interp/$seed" \
        --out "$OUT"
    done
  done
done
echo "$(date -u +%T) aggregate"
nice -n 10 "$PY" -m boltzflow.cli reproduce fisher-rao --full "${SETS[@]}" --out "$OUT"
echo "$(date -u +%T) done load $(cut -d' ' -f1-3 /proc/loadavg)"
