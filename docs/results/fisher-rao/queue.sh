#!/usr/bin/env bash
# The committed grid of `boltzflow reproduce fisher-rao`: one cell (target/interpolation/seed) per process, JOBS at a
# time, niced, in a fixed order (seed 0 of every cell first), resumable (finished cells are skipped), then the
# aggregate call that writes results.json, table.md, figures/ and samples/. From the repository root:
#   SRC=/tmp/frozen/src nohup docs/results/fisher-rao/queue.sh > queue.log 2>&1 &   (the log outside OUT)
# SRC: a frozen copy of src/ (the work tree may change while the grid runs); CELLS: the cells to run (default all);
# AGG=0: no aggregate call at the end.
set -u
PY=${PY:-/work/main/.venv/bin/python}
OUT=${OUT:-docs/results/fisher-rao/run10k}
SEEDS=${SEEDS:-3}
JOBS=${JOBS:-3}
# SETS: overrides of the recipe; default none beyond the seed count (the full scale). The first grid (run/) was cut
# to fit ~75 min on a loaded machine: SETS="--set training.steps=1500 --set evaluation.n_weights=5000
# --set evaluation.ode_steps=50 --set evaluation.n_speed=1000 --set seeds=2" (the recipe then had 2500 steps)
SETS=${SETS:-"--set seeds=$SEEDS"}
export PYTHONPATH=${SRC:-$PWD/src} PY OUT SETS
if [ -z "${CELLS:-}" ]; then
  CELLS=$(for s in $(seq 0 $((SEEDS - 1))); do for t in gmm40 manywell8; do for i in gradient_flow learned linear; do
    echo "$t/$i/$s"; done; done; done)
fi
echo "$CELLS" | xargs -P "$JOBS" -I{} bash -c 'echo "$(date -u +%T) start {} load $(cut -d" " -f1-3 /proc/loadavg)";
  nice -n 10 "$PY" -m boltzflow.cli reproduce fisher-rao --full $SETS --set only={} --out "$OUT";
  rc=$?; echo "$(date -u +%T) end {} rc=$rc"'
[ "${AGG:-1}" = 0 ] && exit 0  # AGG=0: cells only (aggregate by hand once every cell is done)
echo "$(date -u +%T) cells done; aggregate"
nice -n 10 "$PY" -m boltzflow.cli reproduce fisher-rao --full $SETS --out "$OUT" --force  # --force: runs/ is kept
echo "$(date -u +%T) done load $(cut -d' ' -f1-3 /proc/loadavg)"
