"""Free-energy figures of Boltzmann-generator results, all in kT: F(φ), F(φ, ψ) and reduced-energy histograms.

Free energies from samples are ``-log`` of (weighted) histograms. A bin with few samples gives a spike or a hole,
so bins with fewer than ``min_count`` samples are masked (blank) and the figure says so. F(φ) carries a band of
±1 sd over independent draws (or, for one set of samples such as an MD trajectory, over 4 contiguous blocks,
which understates the error of correlated frames). Each curve is shifted to its own minimum (F = 0 there).
The kJ/mol scale, when the temperature is known, is a secondary axis (F(φ)) or stated in the colourbar label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

KJ_PER_MOL_PER_KELVIN = 0.0083144626  # molar gas constant R, kJ/(mol K): 1 kT = R T


def legend_below(fig: Figure, axes: Iterable[Any], **kwargs: Any) -> None:
    """One legend for ``axes`` below the panels (outside every axes, so it covers no data); needs a figure with
    ``layout="constrained"``. Entries with the same label are shown once."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", fontsize=8,
                   ncol=min(3, len(entries)), **kwargs)


def _shift_to_min(f: np.ndarray) -> np.ndarray:
    """``f`` minus its smallest finite value (unchanged when nothing is finite, e.g. every bin masked)."""
    finite = np.isfinite(f)
    return f - f[finite].min() if finite.any() else f


def _as_draws(phi: Any, w: Any) -> tuple[list[np.ndarray], list[np.ndarray | None], str]:
    """Split a curve's samples into draws for the error band: given draws, or 4 blocks of one sample set."""
    if isinstance(phi, np.ndarray) and phi.ndim == 1:
        k = 4 if len(phi) >= 8 else 1
        blocks = np.array_split(np.arange(len(phi)), k)
        return [phi[b] for b in blocks], [None if w is None else np.asarray(w)[b] for b in blocks], \
            f"{k} blocks"
    phis = [np.asarray(p) for p in phi]
    ws = [None] * len(phis) if w is None else [None if v is None else np.asarray(v) for v in w]
    return phis, ws, f"{len(phis)} draws"


def free_energy_profile(
    phis: Sequence[np.ndarray], weights: Sequence[np.ndarray | None], edges: np.ndarray, min_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """F of the pooled draws (each draw's weights normalised to one) and its sd over draws, both in kT.

    Args:
        phis: per draw, samples of shape (n_k,) (any unit matching ``edges``).
        weights: per draw, weights of shape (n_k,) or None (equal).
        edges: bin edges, shape (B + 1,).
        min_count: bins with fewer samples (pooled, or in a draw) are NaN there.

    Returns:
        ``(f, sd)``, shape (B,) each: F shifted to min 0; sd NaN where fewer than 2 draws have the bin.
    """
    hists, counts = [], []
    for phi, w in zip(phis, weights, strict=True):
        w = np.ones(len(phi)) if w is None else np.asarray(w, dtype=float)
        ok = np.isfinite(phi) & np.isfinite(w)
        hists.append(np.histogram(phi[ok], bins=edges, weights=w[ok] / max(w[ok].sum(), 1e-300))[0])
        counts.append(np.histogram(phi[ok], bins=edges)[0])
    pooled = np.sum(hists, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where((np.sum(counts, 0) >= min_count) & (pooled > 0), -np.log(pooled), np.nan)
        per = np.where((np.array(counts) >= max(1, min_count // len(phis))) & (np.array(hists) > 0),
                       -np.log(np.array(hists)), np.nan)
    f = _shift_to_min(f)
    both = np.isfinite(per - f)  # align each draw to the pooled curve on the bins both have
    offset = np.where(both, per - f, 0.0).sum(1, keepdims=True) / np.maximum(both.sum(1, keepdims=True), 1)
    per = per - offset
    enough = np.isfinite(per).sum(0) >= 2
    sd = np.full_like(f, np.nan)
    if len(phis) > 1 and enough.any():
        sd[enough] = np.nanstd(per[:, enough], axis=0, ddof=1)
    return f, sd


def free_energy_phi(
    curves: Sequence[tuple[str, Any, Any]],
    reference: tuple[Any, ...] | None = None,
    bins: int = 60,
    min_count: int = 20,
    temperature_kelvin: float | None = None,
) -> Figure:
    """F(φ) from samples beside an optional reference curve, in kT (kJ/mol on a secondary axis when
    ``temperature_kelvin`` is given).

    Args:
        curves: ``(label, phi, weights)``: φ in degrees, either one array (n,) (its band: sd over 4 contiguous
            blocks) or a sequence of independent draws (n_k,) (band: sd over draws); weights alike, or None.
        reference: ``(label, φ grid (G,) degrees, F (G,) kT[, standard error (G,) kT])``.
        bins: bins over (-180°, 180°].
        min_count: bins with fewer samples are masked (said in the title).
        temperature_kelvin: the kJ/mol axis's temperature.
    """
    edges = np.linspace(-180, 180, bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig = Figure(figsize=(6.0, 4.8), layout="constrained")
    ax = fig.subplots()
    for label, phi, w in curves:
        phis, ws, how = _as_draws(phi, w)
        f, sd = free_energy_profile(phis, ws, edges, min_count)
        (line,) = ax.plot(centres, f, label=label)
        ax.fill_between(centres, f - sd, f + sd, color=line.get_color(), alpha=0.3, label=f"{label}: ±1 sd over {how}")
    if reference is not None:
        grid, f_ref = np.asarray(reference[1], dtype=float), np.asarray(reference[2], dtype=float)
        f_ref = _shift_to_min(f_ref)
        ax.plot(grid, f_ref, "k--", label=reference[0])
        if len(reference) > 3 and reference[3] is not None:
            err = np.asarray(reference[3], dtype=float)
            ax.fill_between(grid, f_ref - err, f_ref + err, color="black", alpha=0.15, label=f"{reference[0]}: ±1 s.e.")
    ax.set(xlabel="φ (degrees)", ylabel="F(φ) (kT)", xlim=(-180, 180), xticks=range(-180, 181, 60))
    ax.set_title(f"bins with < {min_count} samples masked", fontsize=8)
    if temperature_kelvin:
        kt = KJ_PER_MOL_PER_KELVIN * temperature_kelvin
        ax.secondary_yaxis("right", functions=(lambda f: f * kt, lambda e: e / kt)).set_ylabel(
            f"F(φ) (kJ/mol at {temperature_kelvin:g} K)")
    legend_below(fig, [ax])
    return fig


def free_energy_phi_psi(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray | None]],
    bins: int = 60,
    min_count: int = 3,
    temperature_kelvin: float | None = None,
) -> Figure:
    """(φ, ψ) free-energy maps side by side, kT, each shifted to its minimum; bins with fewer than
    ``min_count`` samples are blank.

    Args:
        panels: ``(title, angles (n, 2) degrees, weights (n,) or None)`` per panel.
        bins: bins per axis over (-180°, 180°].
        min_count: masking threshold (stated in the colourbar label).
        temperature_kelvin: when given, the colourbar label states 1 kT in kJ/mol.
    """
    edges = np.linspace(-180, 180, bins + 1)
    fig = Figure(figsize=(5 * len(panels), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    im = None
    for ax, (title, ang, w) in zip(axes, panels, strict=True):
        h, _, _ = np.histogram2d(ang[:, 0], ang[:, 1], bins=[edges, edges], weights=w, density=True)
        count, _, _ = np.histogram2d(ang[:, 0], ang[:, 1], bins=[edges, edges])
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where((count >= min_count) & (h > 0), -np.log(h), np.nan)
        im = ax.pcolormesh(edges, edges, _shift_to_min(f).T, cmap="viridis", vmin=0, vmax=10)
        ax.set(title=title, xlabel="φ (degrees)", ylabel="ψ (degrees)")
    unit = f"; 1 kT = {KJ_PER_MOL_PER_KELVIN * temperature_kelvin:.3f} kJ/mol" if temperature_kelvin else ""
    fig.colorbar(im, ax=axes, label=f"F (kT{unit}); blank: < {min_count} samples")
    return fig


def energy_histograms(u_ref: np.ndarray, u_gen: np.ndarray, w_gen: np.ndarray, ref_label: str = "MD") -> Figure:
    """Reduced-energy histograms of reference frames, flow samples and reweighted flow samples.

    Args:
        u_ref: reference energies, shape (m,), kT.
        u_gen: flow-sample energies, shape (n,), kT (non-finite ones are left out).
        w_gen: importance weights of the flow samples, shape (n,).
        ref_label: legend label of the reference.
    """
    ok = np.isfinite(u_gen)
    bins = np.linspace(np.percentile(u_ref, 0.1) - 5, np.percentile(u_ref, 99.9) + 30, 80)
    fig = Figure(figsize=(5.5, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.hist(u_ref, bins=bins, density=True, histtype="step", label=ref_label)
    ax.hist(u_gen[ok], bins=bins, density=True, histtype="step", label="flow samples")
    ax.hist(u_gen[ok], bins=bins, weights=w_gen[ok], density=True, histtype="step", label="flow, reweighted")
    ax.set(xlabel="reduced energy u (kT)", ylabel="density (1/kT)")
    legend_below(fig, [ax])
    return fig
