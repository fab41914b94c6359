"""Runner ``model-baselines``: the data-trained BG (NLL) and data-free reverse KL on the model systems, over seeds.

Each (system, method, training seed) is one :func:`boltzflow.experiments.baselines.run` in
``OUT/runs/<system>-<method>-s<seed>/`` (resumable; a finished one is read back, not repeated), so a killed grid
continues where it stopped and more seeds can be added to a finished one with ``--set seeds=[...]``.
``results.json`` holds every run's headline numbers and, per (system, method), their mean ± sd over the
training seeds: one training seed is not a result either, since the spread between seeds is often larger than
the spread between evaluation draws of one model. ``table.md`` shows the summary next to the noise floors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from boltzflow.experiments import baselines
from boltzflow.experiments.runner import check_device, finish, start
from boltzflow.io import save_text
from boltzflow.systems.registry import get_system


@dataclass
class Target(baselines.BaselineScale):
    """One system and the sizes of its runs (the fields of :class:`~boltzflow.experiments.baselines.BaselineScale`).

    Attributes:
        system: registry name with an exact sampler or an MCMC reference (``boltzflow systems``).
    """

    system: str = "gmm40"

    def __post_init__(self) -> None:
        super().__post_init__()
        get_system(self.system)  # an unknown name raises ValueError listing the known ones


def default_targets() -> list[Target]:
    """The four model systems at the sizes of the committed table (``baselines.scale_for(name, "full")``)."""
    out = []
    for name in ("gmm40", "manywell32", "dw4", "lj13"):
        sc = baselines.scale_for(name, "full")
        out.append(Target(**{f.name: getattr(sc, f.name) for f in fields(sc)}, system=name))
    return out


@dataclass
class Config:
    """The recipe ``model-baselines`` (``recipes/model-baselines.toml``).

    Attributes:
        targets: the systems, each with the sizes of its runs.
        methods: ``"nll"`` and/or ``"reverse_kl"``.
        seeds: training seeds, offset by ``--seed``.
    """

    targets: list[Target] = field(default_factory=default_targets)
    methods: list[str] = field(default_factory=lambda: list(baselines.METHODS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])

    def __post_init__(self) -> None:
        for name, values in (("targets", [t.system for t in self.targets]), ("methods", self.methods),
                             ("seeds", self.seeds)):
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be a non-empty list without repeats, got {values}")
        if bad := sorted(set(self.methods) - set(baselines.METHODS)):
            raise ValueError(f"methods: unknown {bad}; choose from {list(baselines.METHODS)}")
        if min(self.seeds) < 0:
            raise ValueError(f"seeds must be >= 0, got {self.seeds}")


def headline(r: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one baseline run that the summary compares (None where they do not apply)."""
    d, g = r["evaluation"]["draws"], r["evaluation"]["generic"]
    pw = d.get("particle_w2") or {}
    mean = lambda entry: None if entry is None else float(entry["mean"])  # noqa: E731
    return {
        "system": r["system"], "method": r["method"], "seed": r["seed"],
        "ess_fraction": mean(d["ess_fraction"]),
        "log_z_error": mean(d["log_z"]["error"]) if "log_z" in d else None,
        "nll_reference": g.get("nll_reference"),
        "energy_distance": mean(d["energy_distance"]["reweighted"]) if "energy_distance" in d else None,
        "energy_distance_floor": mean(d["energy_distance"]["floor"]) if "energy_distance" in d else None,
        "modes_covered": mean(d["modes"]["reweighted"]["n_covered"]) if "modes" in d else None,
        "distance_w2": mean(pw.get("distance_w2")), "distance_w2_floor": mean(pw.get("distance_w2_floor")),
        "energy_w2": mean(pw.get("energy_w2")), "energy_w2_floor": mean(pw.get("energy_w2_floor")),
        "wall_seconds": r["provenance"]["wall_seconds"],
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (system, method): ``{key: {mean, sd, n}}`` over the seeds' headline numbers (sd with ddof 1)."""
    out = []
    for system, method in dict.fromkeys((r["system"], r["method"]) for r in rows):
        group = [r for r in rows if (r["system"], r["method"]) == (system, method)]
        entry: dict[str, Any] = {"system": system, "method": method, "seeds": [r["seed"] for r in group]}
        for key in group[0]:
            values = [r[key] for r in group if isinstance(r[key], float | int) and key != "seed"]
            if values and key not in ("system", "method"):
                v = np.asarray(values, dtype=np.float64)
                entry[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                              "n": len(v)}
        out.append(entry)
    return out


def _pm(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "–"
    m, s = entry["mean"], entry["sd"]
    return f"{m:.3g} ± {s:.2g}"


def table_markdown(summary: list[dict[str, Any]]) -> str:
    """One row per (system, method): mean ± sd over training seeds, floors beside the distances."""
    cols = [("ESS fraction", "ess_fraction"), ("log Z error", "log_z_error"), ("NLL held-out", "nll_reference"),
            ("energy distance", "energy_distance"), ("floor", "energy_distance_floor"),
            ("modes (of 40)", "modes_covered"), ("distance W2", "distance_w2"), ("floor", "distance_w2_floor"),
            ("energy W2 (kT)", "energy_w2"), ("floor", "energy_w2_floor"), ("wall (s)", "wall_seconds")]
    head = "| system | method | seeds | " + " | ".join(c for c, _ in cols) + " |\n|" + " --- |" * (len(cols) + 3)
    lines = [f"| {s['system']} | {s['method']} | {len(s['seeds'])} | " + " | ".join(_pm(s.get(k)) for _, k in cols)
             + " |" for s in summary]
    return ("# Model-system baselines: mean ± sd over training seeds\n\n"
            "Each entry is the mean ± sd over training seeds of one run's own mean over its evaluation draws "
            "(reweighted samples; distances next to their noise floors).\n\n" + head + "\n" + "\n".join(lines) + "\n")


def run(out: str | Path, config: Config, *, seed: int = 0, progress: bool = True, force: bool = False,
        command: list[str] | None = None, device: str | None = None,
        recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) every (system, method, seed) and write results.json, table.md and recipe.toml."""
    check_device(device, "model-baselines")
    ctx = start(out, seed=seed, progress=progress, force=force, command=command)
    rows = []
    for target in config.targets:
        for method in config.methods:
            for s in config.seeds:
                folder = ctx.out / "runs" / f"{target.system}-{method}-s{seed + s}"
                r = baselines.run(folder, target.system, method, seed=seed + s, scale=target, progress=progress)
                rows.append(headline(r))
    summary = summarise(rows)
    results = finish(ctx, {"runs": rows, "summary": summary}, config, recipe)
    save_text(ctx.out / "table.md", table_markdown(summary))
    return results


__all__ = ["Config", "Target", "default_targets", "headline", "run", "summarise", "table_markdown"]
