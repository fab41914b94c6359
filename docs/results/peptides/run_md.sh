#!/usr/bin/env bash
# MD references of the shipped peptides (OBC, 300 K, HBonds, LangevinMiddle 2 fs, friction 1/ps, a frame every
# 1 ps, 100 ps discarded equilibration per replica, OpenMM Reference platform). Resumable: rerun to continue.
#   bash docs/results/peptides/run_md.sh            (from the repository root, PYTHONPATH=src or installed)
set -euo pipefail
PY=${PYTHON:-python}
mkdir -p runs/peptides
nice -n 10 $PY -m boltzflow.cli simulate --pdb src/boltzflow/data/peptides/AAA.pdb \
    --replicas 4 --ns 4 --seed 0 --out runs/peptides/AAA --no-progress > runs/peptides/AAA.log 2>&1 &
nice -n 10 $PY -m boltzflow.cli simulate --pdb src/boltzflow/data/peptides/AAAAA.pdb \
    --replicas 4 --ns 2 --seed 0 --out runs/peptides/AAAAA --no-progress > runs/peptides/AAAAA.log 2>&1 &
wait
