"""AMBER force-field throughput: the batched torch ``AmberEnergy`` against OpenMM, same run, same machine.

System: alanine dipeptide (22 atoms), AMBER99SB-ILDN + OBC implicit solvent (amber99_obc.xml), NoCutoff, no
constraints. One "evaluation" = potential energy *and* forces of one configuration.

* torch: ``AmberEnergy.energy_and_force`` (autograd forces, internal chunks of 1024 frames) on CPU,
  float32 and float64, with 2 and with 1 intra-op threads, batches of 1 ... 65536 perturbed configurations.
* OpenMM: the bridge (``OpenMMEnergy.evaluate``: a Context loop, setPositions + getState(energy, forces)) on
  the Reference platform and on the CPU platform with 2 threads.

Each cell is the best of a few timed repeats (each repeat at least ~1 s, or one call), to damp the load from
other processes: the machine is shared (2 cores, several agents at once), so absolute numbers are noisy and
multi-threaded numbers suffer most (OpenMP threads wait on each other when cores are oversubscribed).

Run: ``python benchmarks/bench_forcefield.py [--quick]``.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

BATCHES = (1, 16, 256, 4096, 65536)
QUICK_BATCHES = (1, 16, 256, 4096)


def _best_rate(fn: Callable[[], None], n_items: int, min_seconds: float, repeats: int) -> float:
    """Items per second, best over ``repeats`` timed blocks of >= ``min_seconds`` (or one call); batches
    above 4096 items get no separate warm-up and a single repeat (they take seconds each)."""
    if n_items > 4096:
        repeats = 1
    else:
        fn()  # warm-up
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, calls * n_items / elapsed)
    return best


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import openmm

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} logical cores, load average {load:.1f} at start; "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"OpenMM {openmm.version.full_version}, NumPy {np.__version__}"
    )


def _frames(xyz: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return xyz + rng.normal(0.0, 0.01, (n, *xyz.shape))


def bench_torch(
    system, xyz: np.ndarray, batches: tuple[int, ...], quick: bool, reference_now: Callable[[], float]
) -> dict[tuple[str, int], tuple[list[float], float]]:
    """Evaluations/s of the torch force field, keyed by (dtype name, threads): one rate per batch size, and
    OpenMM Reference's rate measured right after the row (``reference_now``), so that the ratio compares runs
    made under the same load from other processes."""
    from boltzflow.energies.amber import AmberEnergy

    energy = AmberEnergy.from_system(system)
    frames = _frames(xyz, max(batches))
    old_threads = torch.get_num_threads()
    out: dict[tuple[str, int], tuple[list[float], float]] = {}
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            for dtype in (torch.float32, torch.float64):
                rates = []
                for b in batches:
                    x = torch.as_tensor(frames[:b], dtype=dtype)
                    rates.append(
                        _best_rate(
                            lambda x=x: energy.energy_and_force(x),
                            b,
                            0.3 if quick else 1.0,
                            2 if quick else 3,
                        )
                    )
                out[(str(dtype).removeprefix("torch."), threads)] = (rates, reference_now())
    finally:
        torch.set_num_threads(old_threads)
    return out


def bench_compiled(
    system, xyz: np.ndarray, batches: tuple[int, ...], chunk: int = 1024
) -> tuple[list, float]:
    """float32, 1 thread, ``torch.compile`` of ``energy_kj`` on fixed chunks of ``chunk`` frames (the last one
    padded); returns evaluations/s per batch (None below ``chunk``) and the compile time in s."""
    from boltzflow.energies.amber import AmberEnergy

    energy = AmberEnergy.from_system(system)
    compiled = torch.compile(energy.energy_kj, dynamic=False)

    def energy_and_force(x: torch.Tensor) -> None:
        for part in x.split(chunk):
            n = part.shape[0]
            if n < chunk:
                part = torch.cat([part, part[:1].expand(chunk - n, -1, -1)])
            part = part.detach().requires_grad_(True)
            e = compiled(part)
            (grad,) = torch.autograd.grad(e.sum(), part)
            _ = (e[:n].detach(), -grad[:n])

    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames = torch.as_tensor(_frames(xyz, max(batches)), dtype=torch.float32)
        start = time.perf_counter()
        energy_and_force(frames[:chunk])
        compile_s = time.perf_counter() - start
        rates = [
            _best_rate(lambda x=frames[:b]: energy_and_force(x), b, 1.0, 3) if b >= chunk else None
            for b in batches
        ]
    finally:
        torch.set_num_threads(old_threads)
    return rates, compile_s


def bench_openmm(system, xyz: np.ndarray, quick: bool) -> dict[str, float]:
    """Evaluations/s of OpenMM through the bridge (a Context loop), per platform."""
    from boltzflow.energies.openmm_bridge import OpenMMEnergy

    n = 50 if quick else 300
    frames = _frames(xyz, n, seed=1)
    out = {}
    for name, plat, props in (("Reference", "Reference", None), ("CPU, 2 threads", "CPU", {"Threads": "2"})):
        with OpenMMEnergy(system, platform=plat, platform_properties=props) as bridge:
            out[name] = _best_rate(
                lambda b=bridge: b.evaluate(frames), n, 0.3 if quick else 1.0, 2 if quick else 3
            )
    return out


def run(quick: bool = False) -> str:
    """Run the force-field comparison; returns a markdown section."""
    from boltzflow.energies.openmm_bridge import OpenMMEnergy
    from boltzflow.energies.openmm_system import alanine_dipeptide

    molecule = alanine_dipeptide("obc", constraints="none")
    system, xyz = molecule.system, molecule.positions
    batches = QUICK_BATCHES if quick else BATCHES
    machine = _machine()
    reference = bench_openmm(system, xyz, quick)
    ref_frames = _frames(xyz, 50, seed=2)
    with OpenMMEnergy(system, platform="Reference") as bridge:

        def reference_now() -> float:
            return _best_rate(lambda: bridge.evaluate(ref_frames), len(ref_frames), 0.5, 1)

        ours = bench_torch(system, xyz, batches, quick, reference_now)
        if not quick:
            compiled, compile_s = bench_compiled(system, xyz, batches)
            ours[("float32, torch.compile (chunks of 1024)", 1)] = (compiled, reference_now())
    lines = [
        "## AMBER force field: torch `AmberEnergy` vs OpenMM",
        "",
        "Alanine dipeptide (22 atoms), AMBER99SB-ILDN + OBC GBSA, NoCutoff. Energy + forces per "
        "configuration, evaluations per second (higher is better); best of several repeats. The CPU is "
        "shared with other agents (2 cores), so numbers are noisy and the 2-thread rows are hurt most by "
        "oversubscription. The load changes during the run, so each torch row's ratio is taken against "
        "OpenMM Reference re-measured right after that row (last two columns).",
        "",
        f"Machine: {machine}.",
        "",
        "| backend | "
        + " | ".join(f"batch {b:,}" for b in batches)
        + " | OpenMM Reference right after | × OpenMM Reference (largest batch) |",
        "| --- | " + " | ".join("---:" for _ in batches) + " | ---: | ---: |",
    ]
    for name, rate in reference.items():
        cells = " | ".join(f"{rate:,.0f}" for _ in batches)
        lines.append(f"| OpenMM {name} (Context loop) | {cells} | | |")
    for (dtype, threads), (rates, ref_rate) in ours.items():
        cells = " | ".join("—" if r is None else f"{r:,.0f}" for r in rates)
        lines.append(
            f"| torch {dtype}, {threads} thread{'s' if threads > 1 else ''} | {cells} | {ref_rate:,.0f} "
            f"| {rates[-1] / ref_rate:.1f} |"
        )
    lines += [
        "",
        "OpenMM evaluates one configuration per call, so its rate does not depend on the batch size "
        "(repeated in every column; measured first).",
    ]
    if not quick:
        lines.append(
            f"torch.compile (inductor, CPU) took {compile_s:.0f} s to compile here; `AmberEnergy` itself "
            "runs eagerly."
        )
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"
    lines.append(f"Load average at the end: {load}.")
    if quick:
        lines.append("(quick run: fewer batch sizes and repeats, no torch.compile row; not for quoting)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
