"""Every figure the package writes, opened as a Figure: labels with units, colourbars, legends outside the axes,
masked low-count bins and error bands on F(φ), one energy unit per figure (kT, kJ/mol only as a secondary scale).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.figure import Figure

from boltzflow import plots, plots_cmt, plots_fisher_rao
from boltzflow.plots_free_energy import KJ_PER_MOL_PER_KELVIN, free_energy_profile


def _data_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and not hasattr(ax, "_colorbar")]


def _has_unit(label: str) -> bool:
    return "(" in label and label.rstrip().endswith(")") or ")" in label.split(";")[0]


def assert_trustworthy(fig: Figure) -> None:
    """Labels with units on every panel (a shared y axis may carry its label on one panel only), a labelled
    colourbar for every 2-D histogram, no legend inside an axes, and a figure legend when anything is labelled."""
    axes = _data_axes(fig)
    assert axes
    labelled = False
    for ax in axes:
        assert _has_unit(ax.get_xlabel()), f"x label without unit: {ax.get_xlabel()!r}"
        ylabels = [a.get_ylabel() for a in ax.get_shared_y_axes().get_siblings(ax)]
        assert any(_has_unit(y) for y in ylabels), f"y label without unit: {ylabels!r}"
        assert ax.get_legend() is None, "a legend inside the axes may cover data"
        labelled |= any(not lb.startswith("_") for lb in ax.get_legend_handles_labels()[1])
        for mesh in (c for c in ax.collections if isinstance(c, QuadMesh)):
            bars = [m.colorbar for a in axes for m in a.collections if getattr(m, "colorbar", None) is not None]
            assert bars, "2-D histogram without a colourbar"
            assert all(b.ax.get_ylabel() or b.ax.get_xlabel() for b in bars), "colourbar without a label"
            assert mesh.norm is not None
    if labelled:
        assert fig.legends, "labelled artists but no figure legend"


def _rng():
    return np.random.default_rng(0)


def test_distance_histograms_and_dynamics():
    r = np.abs(_rng().normal(1.0, 0.5, 500))
    assert_trustworthy(plots.distance_histograms([("a", r, r, r + 0.1), ("b", r, r * 1.1, r)]))
    x = _rng().normal(size=(400, 4))
    assert_trustworthy(plots.dynamics(x, x + 0.1, x[:, 0], x[:, 1], 0.01))


def test_ramachandran_has_a_colourbar_and_blank_empty_bins():
    a = _rng().uniform(-math.pi, math.pi, (2000, 2))
    fig = plots.ramachandran(a, {"model": a[:100]})
    assert_trustworthy(fig)
    mesh = next(c for c in fig.axes[1].collections if isinstance(c, QuadMesh))
    assert np.ma.count_masked(mesh.get_array()) > 0  # 100 points in 8100 bins: most are empty and masked


def test_min_r_and_pca_panels():
    assert_trustworthy(plots.min_r_histograms({"MD": _rng().uniform(0.2, 0.4, 300), "flow": [0.15, 0.3, np.inf]}))
    proj = {"data": _rng().normal(size=(500, 2)), "flow": _rng().normal(size=(500, 2)), "x": np.zeros((3, 2))}
    fig = plots.pca_panels(proj)
    assert_trustworthy(fig)
    assert sum(hasattr(ax, "_colorbar") for ax in fig.axes) == 1


def test_energy_histograms():
    u = _rng().normal(size=300)
    assert_trustworthy(plots.energy_histograms(u, u + 1, np.ones(300)))


def test_free_energy_profile_against_exact_counts():
    """Bins with 100, 50 and 10 samples: F = (0, ln 2, masked) with min_count 20; equal draws have sd 0."""
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    phi = np.concatenate([np.full(100, 0.5), np.full(50, 1.5), np.full(10, 2.5)])
    f, sd = free_energy_profile([phi], [None], edges, min_count=20)
    np.testing.assert_allclose(f[:2], [0.0, math.log(2)])
    assert np.isnan(f[2]) and np.isnan(sd).all()  # one draw: no sd
    f2, sd2 = free_energy_profile([phi, phi], [None, np.full(len(phi), 3.0)], edges, min_count=20)
    np.testing.assert_allclose(f2, [0.0, math.log(2), math.log(10)])  # pooled, bin 3 has 20 samples: kept
    np.testing.assert_allclose(sd2[:2], 0.0, atol=1e-12)
    w = np.where(phi > 1, 2.0, 1.0)  # weights double bin 2: F(bin 2) - F(bin 1) = ln 2 - ln 2 = 0
    f3, _ = free_energy_profile([phi], [w], edges, min_count=20)
    np.testing.assert_allclose(f3[:2], [0.0, 0.0], atol=1e-12)


def test_free_energy_phi_has_bands_masks_and_a_kj_axis():
    draws = [_rng().normal(-70, 20, 3000) for _ in range(4)]
    ref = ("umbrella", np.linspace(-180, 180, 73), np.linspace(0, 5, 73), np.full(73, 0.2))
    fig = plots.free_energy_phi([("BG", draws, None), ("MD", np.concatenate(draws), None)], ref,
                                temperature_kelvin=300.0)
    assert_trustworthy(fig)
    ax = fig.axes[0]
    assert "masked" in ax.get_title()
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3  # two sample bands + the reference's
    bg = ax.get_lines()[0].get_ydata()
    assert np.isnan(bg).any() and np.isfinite(bg).any()  # bins far from -70° are masked, not spikes
    secondary = ax.child_axes[0]
    assert "kJ/mol" in secondary.get_ylabel() and "kT" in ax.get_ylabel()
    assert secondary._functions[0](1.0) == pytest.approx(KJ_PER_MOL_PER_KELVIN * 300.0)


def test_free_energy_phi_psi_masks_low_counts():
    ang = np.concatenate([_rng().normal(-70, 15, (4000, 2)), [[100.0, 100.0]]])
    fig = plots.free_energy_phi_psi([("MD", ang, None), ("BG", ang, np.ones(len(ang)))], temperature_kelvin=300)
    assert_trustworthy(fig)
    mesh = next(c for c in fig.axes[0].collections if isinstance(c, QuadMesh))
    values = np.ma.filled(mesh.get_array(), np.nan).reshape(60, 60).T  # back to (φ bin, ψ bin)
    assert np.isnan(values[46, 46])  # the lone point at (100°, 100°) is under the count threshold
    assert "kT" in fig.axes[-1].get_ylabel() and "kJ/mol" in fig.axes[-1].get_ylabel()


def test_free_energy_figures_survive_every_bin_masked():
    """A tiny sample (the smoke tests') masks every bin: blank panels, no warning."""
    ang = _rng().normal(0, 50, (2, 2))
    assert_trustworthy(plots.free_energy_phi_psi([("a", ang, None)]))
    assert_trustworthy(plots.free_energy_phi([("a", ang[:, 0], None)], ("ref", [0.0], [np.nan])))


def test_cmt_figures():
    history = [{"step": i, "lam": 1.0 / (i + 1), "eta": 0.0, "a": 0.5, "b": 0.5, "temperature_factor": 2.0,
                "entropy": 1.0, "kl": 0.1, "delta_h": 0.05, "buffer_ess_fraction": 0.3, "target_ess_fraction": 0.1}
               for i in range(3)]
    for kelvin in (300.0, None):
        assert_trustworthy(plots_cmt.learned_schedule(history, temperature_kelvin=kelvin))
    fig = plots_cmt.ess_vs_evaluations({"cmt": ([1e3, 2e3], [[0.1, 0.5], [0.2, 0.6]]), "kl": ([1e3, 2e3], [0.1, 0.2])})
    assert_trustworthy(fig)
    assert "%" in fig.axes[0].get_ylabel()


def test_fisher_rao_figures():
    t = np.linspace(0, 1, 11)
    speeds = {2.0: t + 1, 4.0: t + 2}
    assert_trustworthy(plots_fisher_rao.teleport_speeds(t, speeds, speeds))
    assert_trustworthy(plots_fisher_rao.learned_speeds([("a", {"fit": (t, t + 1, 0.1 * t)}), ("b", {"fit": (t, t + 1,
                                                                                                          t)})]))
    x = _rng().normal(size=(100, 2))
    assert_trustworthy(plots_fisher_rao.samples_2d([("a", x), ("b", x)], means=np.zeros((1, 2))))
    assert_trustworthy(plots_fisher_rao.loss_curves({"fit": (t, t + 1)}))


def test_umbrella_figure():
    from boltzflow.commands.umbrella import _figure

    phi = np.linspace(-math.pi, math.pi, 72)
    r = SimpleNamespace(phi_grid=phi, free_energy_kt=1 + np.cos(phi), free_energy_err=np.full(72, 0.1),
                        alpha_l_population=0.02, alpha_l_population_err=0.005)
    fig = _figure(r, 2.494, "alanine dipeptide")
    assert_trustworthy(fig)
    assert "kT" in fig.axes[0].get_ylabel()


def test_the_checker_catches_an_unlabelled_panel_and_a_missing_colourbar():
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(AssertionError, match="x label"):
        assert_trustworthy(fig)
    ax.set(xlabel="x (nm)", ylabel="y (nm)")
    ax.pcolormesh(np.zeros((2, 2)))
    with pytest.raises(AssertionError, match="colourbar"):
        assert_trustworthy(fig)
    fig2 = Figure()
    ax2 = fig2.subplots()
    ax2.plot([0, 1], [0, 1], label="a")
    ax2.set(xlabel="x (nm)", ylabel="y (nm)")
    ax2.legend()
    with pytest.raises(AssertionError, match="legend"):
        assert_trustworthy(fig2)
