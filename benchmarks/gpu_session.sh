#!/usr/bin/env bash
# One prepared command for a lent GPU (issue 17): the device benchmark, then paper 001's Table 2 at the paper's
# 200 epochs for nll, penalty and penalty_sum under a hard wall-clock deadline, then the results into OUT.
#
#   bash benchmarks/gpu_session.sh OUT            # on the GPU machine, from the repo root (< 10 min)
#   bash benchmarks/gpu_session.sh OUT --smoke    # the same steps at tiny size on the CPU (a few minutes)
#   bash benchmarks/gpu_session.sh --fetch-wheels # here, before the device call: the wheels into .whl/
#
# Wheels to carry (cp312, manylinux x86_64; `carry: [".whl"]`), what needs them, and why no others:
#   openmm==8.3.1       builds the AMBER System from the PDB + force-field XML (the torch force field is read
#                       from it; the pair list comes from its topology) and the benchmark's OpenMM rows (14 MB)
#   pot==0.9.6.post1    exact W2 (ot.emd2) and provenance; 1.5 MB (0.9.7.post1 is 33 MB: its BSP extension alone
#                       is 175 MB unpacked, and the tree that travels is already ~43 MB of the 64 MiB allowed)
#   not carried: mdtraj (only writes .xtc copies of the samples; skipped when absent: npz are written),
#   pymbar (not imported by these commands), openmm-cuda-12 (needs the nvidia-*-cu12 runtime wheels; cuFFT
#   alone is far over what may travel), tqdm/numpy/scipy/matplotlib/torch (already on the machine).
#
# Time plan (full): preflight ~15 s, benchmark ~1-2 min (skipped when RUN already holds its JSON), training of
# the three models as three parallel processes on the one GPU until TRAIN_END = start + BUDGET_S - SCORE_S,
# each stopping at the first epoch boundary after it, then one scoring process (samples, AMBER energies on the
# GPU, W2 on the CPU, figures; ~1-2 min). Everything ends by start + BUDGET_S (default 560 s). Rerunning the
# same command continues the training from the checkpoints in RUN (runs/gpu-session, kept on a warm machine).
set -euo pipefail

PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

fetch_wheels() {
    local exclude
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qxF /.whl/ "$exclude" 2>/dev/null || echo /.whl/ >>"$exclude"
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl openmm==8.3.1 pot==0.9.6.post1
    local tree wheels
    tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb | tail -1 | cut -f1)
    wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
    awk -v t="$tree" -v w="$wheels" 'BEGIN { printf "travels: tree %.1f MiB + wheels %.1f MiB = %.1f MiB of 64 MiB\n",
        t / 2^20, w / 2^20, (t + w) / 2^20; if (t + w > 64 * 2^20) { print "too large: carry less"; exit 1 } }'
}

if [[ "${1:-}" == "--fetch-wheels" ]]; then fetch_wheels; exit 0; fi
OUT=${1:?usage: bash benchmarks/gpu_session.sh OUT [--smoke] | --fetch-wheels}
SMOKE=0
if [[ "${2:-}" == "--smoke" ]]; then SMOKE=1; fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/session.log") 2>&1
T0=$(date +%s)
say() { echo "[gpu_session $(( $(date +%s) - T0 )) s] $*"; }

if (( SMOKE )); then
    DEVICE=${DEVICE:-cpu}; RUN=${RUN:-runs/gpu-session-smoke}; SCALE="--quick --set stages.0.epochs=1"
    BUDGET_S=${BUDGET_S:-1800}; SCORE_S=${SCORE_S:-300}; BENCH="--smoke"; THREADS=1
    BENCH_MD="$RUN/benchmarks.md"  # smoke numbers never touch docs/
else
    DEVICE=${DEVICE:-cuda}; RUN=${RUN:-runs/gpu-session}; SCALE="--full"
    BUDGET_S=${BUDGET_S:-560}; SCORE_S=${SCORE_S:-150}; BENCH=""; THREADS=2
    BENCH_MD=docs/benchmarks.md
fi
read -r -a MODELS <<<"${MODELS:-nll penalty penalty_sum}"  # e.g. MODELS="penalty penalty_sum" to train only those
CART="$RUN/cartesian"
mkdir -p "$RUN"

# (a) wheels: only when the imports fail and the carried wheels fit this Python
export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import openmm, ot" 2>/dev/null; then
    tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    if compgen -G ".whl/*$tag*.whl" >/dev/null; then
        say "installing carried wheels: $(ls .whl)"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    fi
fi
say "preflight: $("$PY" -c 'import sys, torch, numpy, openmm, ot; print(f"python {sys.version.split()[0]}, torch {torch.__version__} (cuda {torch.version.cuda}, available {torch.cuda.is_available()}), numpy {numpy.__version__}, openmm {openmm.__version__}, pot {ot.__version__}")')"
if [[ "$DEVICE" == cuda* ]]; then
    nvidia-smi --query-gpu=name,memory.total,compute_mode,driver_version --format=csv,noheader || true
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'CUDA not available to torch')"
fi
MODE=Default
if [[ "$DEVICE" == cuda* ]]; then
    MODE=$(nvidia-smi --query-gpu=compute_mode --format=csv,noheader 2>/dev/null | head -1 || true)
    MODE=${MODE:-Default}
fi
bf() { "$PY" -m boltzflow.cli "$@"; }

# (b) the device benchmark (~1-2 min on a GPU; skipped when this RUN already has it)
if [[ ! -f "$RUN/bench_device.json" ]]; then
    say "device benchmark $BENCH on $DEVICE"
    if [[ ! -f "$BENCH_MD" ]]; then cp docs/benchmarks.md "$BENCH_MD"; fi
    if "$PY" benchmarks/device.py --device "$DEVICE" $BENCH --out "$BENCH_MD" --json "$RUN/bench_device.json.tmp" \
        >/dev/null; then
        mv "$RUN/bench_device.json.tmp" "$RUN/bench_device.json"
    else
        say "the device benchmark failed (traceback above); going on with Table 2"
    fi
else
    say "device benchmark already in $RUN/bench_device.json (delete it to measure again)"
fi
if [[ -f "$RUN/bench_device.json" ]]; then  # now, so that the benchmark comes back even if a later step fails
    cp "$BENCH_MD" "$OUT/benchmarks.md"
    cp "$RUN/bench_device.json" "$OUT/bench_device.json"
fi

# (c) Table 2: train in parallel until the deadline, then score what each model reached
for f in results.json table2.md; do
    if [[ -f "$CART/$f" ]]; then mv "$CART/$f" "$CART/previous_$f"; fi  # a rerun trains on from the checkpoints
done
TRAIN_END=$(( T0 + BUDGET_S - SCORE_S ))
train() {  # model, minutes left
    bf reproduce alanine-cartesian $SCALE --set "models=[\"$1\"]" --device "$DEVICE" --set "deadline_minutes=$2" \
        --set train_only=true --no-progress --threads "$THREADS" --out "$CART" >"$RUN/train_$1.log" 2>&1
}
left=$(( TRAIN_END - $(date +%s) ))
if (( left > 30 )); then
    if [[ "$MODE" == "Default" ]]; then
        say "training ${MODELS[*]} in parallel for up to $left s ($SCALE, 200-epoch plan for --full)"
        pids=()
        declare -A shown=()
        for m in "${MODELS[@]}"; do train "$m" "$(awk "BEGIN{print $left/60}")" & pids+=($!); done
        while kill -0 "${pids[@]}" 2>/dev/null; do  # progress: each log's last line, when it changed
            sleep $(( SMOKE ? 5 : 20 ))
            for m in "${MODELS[@]}"; do
                line=$(tail -n 1 "$RUN/train_$m.log" 2>/dev/null || true)
                if [[ -n "$line" && "$line" != "${shown[$m]:-}" ]]; then say "$line"; shown[$m]=$line; fi
            done
        done
        for p in "${pids[@]}"; do wait "$p" || say "a training process exited with status $?"; done
    else
        say "GPU compute mode $MODE: training one model after another"
        for i in "${!MODELS[@]}"; do
            share=$(( (TRAIN_END - $(date +%s)) / (${#MODELS[@]} - i) ))
            if (( share > 10 )); then train "${MODELS[$i]}" "$(awk "BEGIN{print $share/60}")" || true; fi
        done
    fi
    for m in "${MODELS[@]}"; do echo "--- $RUN/train_$m.log"; cat "$RUN/train_$m.log"; done
else
    say "no time left for training ($left s); scoring the checkpoints as they are"
fi
say "scoring"
models=$(printf '"%s",' "${MODELS[@]}")  # a TOML list: ["nll","penalty",...]
bf reproduce alanine-cartesian $SCALE --set "models=[${models%,}]" --device "$DEVICE" --set deadline_minutes=0 \
    --no-progress --threads "$(( SMOKE ? 1 : 8 ))" --out "$CART"

# (d) results into OUT (8 files, one level deep)
cp "$CART/results.json" "$CART/table2.md" "$CART/figures/fig4_min_r.png" "$CART/figures/fig4_pca.png" "$OUT/"
"$PY" - "$CART/samples" "$OUT/samples.npz" <<'EOF'
import sys
from pathlib import Path

from boltzflow.io import load_npz, save_npz

files = sorted(Path(sys.argv[1]).glob("*.npz"))
save_npz(sys.argv[2], **{f.stem: load_npz(f)["xyz"] for f in files})
print(f"samples.npz: {', '.join(f.stem for f in files)} (each (n, 22, 3) float32 nm)")
EOF
"$PY" - "$CART/results.json" <<'EOF'
import json
import sys
from pathlib import Path

r = json.loads(Path(sys.argv[1]).read_text())
g = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
print(f"device {r['config']['device']} ({r['config']['device_name']}), planned epochs {r['config']['train']['epochs']}")
for m in r["models"]:
    print(f"  {m['model']:12s} epochs {m.get('epochs_trained', '-')!s:>4} stopped {m.get('stopped_at_deadline', '-')!s:5} "
          f"min_r {g(m['min_r'])} nm  mean U_LJ {g(m['lj_mean'])} kJ/mol  PCA W2 {g(m['pca_w2'])}")
print("not trained:", r["not_trained"] or "none")
EOF
sed -n '/bench:device -->/,/\/bench:device/p' "$BENCH_MD" | grep -E '^\| (torch|OpenMM|RealNVP|IC)' || true
say "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
sleep 1  # let tee finish session.log
