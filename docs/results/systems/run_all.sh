#!/usr/bin/env bash
# The eight baseline runs of docs/results/systems.md, one process at a time (1 thread, nice 10), resumable:
# a finished run (results.json) is skipped, an unfinished one resumes from its checkpoint.
#   bash docs/results/systems/run_all.sh > runs/baselines/run_all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../../.."
export PYTHONPATH=$PWD/src
PY=${PY:-/work/main/.venv/bin/python}
mkdir -p runs/baselines
for run in ${RUNS:-gmm40:nll gmm40:reverse_kl dw4:nll dw4:reverse_kl manywell32:nll manywell32:reverse_kl lj13:nll lj13:reverse_kl}; do
  system=${run%%:*}; method=${run##*:}
  echo "$(date -u +%FT%TZ) start $system $method load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 10 "$PY" -m boltzflow.experiments.baselines "$system" "$method" --seed 0 --no-progress \
    --out "runs/baselines/$system-$method"
  mkdir -p "docs/results/systems/$system-$method"
  cp "runs/baselines/$system-$method/results.json" "runs/baselines/$system-$method/samples.npz" \
    "runs/baselines/$system-$method/config.json" "docs/results/systems/$system-$method/"
  echo "$(date -u +%FT%TZ) done $system $method load $(cut -d' ' -f1-3 /proc/loadavg)"
done
