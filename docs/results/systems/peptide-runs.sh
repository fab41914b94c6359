#!/bin/bash
# The peptide baseline runs of docs/results/systems.md ("Peptides"), in the order they were run, then copied into
# docs/results/systems/<name>/ (results.json, recipe.toml, table.md, figures/). Resumable: rerun the same line.
# Run from the repository root: bash docs/results/systems/peptide-runs.sh
export PYTHONPATH=$PWD/src
PY=${PYTHON:-python}
run() {  # name, extra args...
  local name=$1; shift
  echo "=== $name start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "$name wall %e s, user %U s, sys %S s, maxrss %M kB" nice -n 10 $PY -m boltzflow.cli reproduce \
    cmt-tetrapeptide --quick --set 'methods=["md-nll","reverse-kl"]' --threads 1 --out runs/$name "$@"
  echo "=== $name end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
}
five=(--set system=peptide:AAAAA --set evaluation.n_reference=600)
medium=(--set budget=400000 --set md_nll.steps=78)
run peptide-AAA-quick
run peptide-AAAAA-quick "${five[@]}"
run peptide-AAA-medium "${medium[@]}"
run peptide-AAAAA-medium "${five[@]}" "${medium[@]}"
run peptide-AAA-medium-seed1 --seed 1 "${medium[@]}"
run peptide-AAAAA-medium-seed1 --seed 1 "${five[@]}" "${medium[@]}"
