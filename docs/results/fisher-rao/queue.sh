#!/usr/bin/env bash
# The full grid of run.py: 2 targets x 3 interpolations x 3 seeds, four runs at a time, resumable (finished runs
# are skipped), niced. Usage: cd docs/results/fisher-rao && nohup ./queue.sh > queue.log 2>&1 &
set -u
export PYTHONPATH=../../../src
PY=${PY:-/work/main/.venv/bin/python}
COMMON="--steps 2500 --batch 256 --lr 2e-3 --hidden 64,64,64 --source box --traj-fraction 0.5 --n-eval 50000 --n-weights 10000 --n-speed 2000"
for seed in 0 1 2; do
  for target in gmm40 manywell8; do
    for interp in gradient_flow linear learned; do
      echo "$target $interp $seed"
    done
  done
done | xargs -P 4 -L 1 bash -c 'nice -n 10 $0 run.py --target $1 --interp $2 --seed $3 '"$COMMON"' > runs/$1-$2-s$3.log 2>&1; echo "$(date +%T) done $1 $2 $3 rc=$?"' "$PY"
