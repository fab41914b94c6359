"""Free energy along a periodic coordinate from umbrella windows, combined by MBAR (pymbar).

Window k samples ``p_k(θ) ∝ p(θ) exp(-b_k(θ))`` with the reduced bias ``b_k(θ) = 0.5 κ d(θ, θ0_k)^2``
(κ = k/kT, d = periodic distance). MBAR (Shirts & Chodera 2008) estimates every window's free energy from the
pooled samples, ``u_kn[k, n] = b_k(θ_n)`` (the unbiased energy is common to all states and cancels), and from
them the unbiased weights of each sample; the profile is ``F(θ) = -ln p(θ)`` on bins and the population of a
region is the unbiased expectation of its indicator, each with MBAR's asymptotic standard error. Samples are
first thinned window by window to their statistical inefficiency, so the error bars count roughly independent
samples.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np


class UmbrellaResult(NamedTuple):
    """Unbiased free-energy profile and one region's population from umbrella windows.

    Attributes:
        phi_grid: bin centres, shape (n_bins,), rad.
        free_energy_kt: F = -ln(probability density) relative to its minimum, shape (n_bins,), kT
            (NaN where no sample fell in the bin).
        free_energy_err: standard error of each bin's -ln p (the reference bin's own error not subtracted),
            shape (n_bins,), kT.
        alpha_l_population: unbiased probability of ``region`` (default 0 < θ < 120°).
        alpha_l_population_err: its MBAR standard error.
        delta_f_kt: -ln(P / (1 - P)): free energy of the region relative to the rest, kT.
        delta_f_err: its standard error, kT.
        n_samples: samples used after thinning.
        n_samples_total: samples given.
        statistical_inefficiency: per window, shape (n_windows,), in units of the sampling interval.
        window_free_energies_kt: MBAR free energies of the biased windows, shape (n_windows,), kT.
        min_neighbour_overlap: smallest MBAR overlap-matrix element between neighbouring windows.
    """

    phi_grid: np.ndarray
    free_energy_kt: np.ndarray
    free_energy_err: np.ndarray
    alpha_l_population: float
    alpha_l_population_err: float
    delta_f_kt: float
    delta_f_err: float
    n_samples: int
    n_samples_total: int
    statistical_inefficiency: np.ndarray
    window_free_energies_kt: np.ndarray
    min_neighbour_overlap: float


ALPHA_L = (0.0, 2.0 * math.pi / 3.0)  # 0 < φ < 120°


def import_pymbar() -> Any:
    """Import pymbar without its JAX banner and timeseries notice (it logs them as warnings)."""
    logging.getLogger("pymbar").setLevel(logging.ERROR)
    with _quiet():
        import pymbar
    return pymbar


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Ignore warnings inside the block only (it holds nothing but pymbar calls, whose solvers pass SciPy
    options that SciPy warns about, and whose log-weights overflow harmlessly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def wrap(theta: np.ndarray) -> np.ndarray:
    """Angles mapped to [-pi, pi), rad."""
    return np.remainder(np.asarray(theta, dtype=np.float64) + math.pi, 2.0 * math.pi) - math.pi


def reduced_bias(theta: np.ndarray, theta0: np.ndarray, k_kt: float) -> np.ndarray:
    """``u_kn[k, n] = 0.5 κ d(θ_n, θ0_k)^2``.

    Args:
        theta: samples, shape (n,), rad.
        theta0: window centres, shape (n_windows,), rad.
        k_kt: force constant κ = k / kT, 1/rad^2.

    Returns:
        shape (n_windows, n), kT.
    """
    d = np.abs(wrap(theta[None, :] - theta0[:, None]))
    return 0.5 * k_kt * d**2


def thin(theta_k: np.ndarray, theta0: float) -> tuple[np.ndarray, float]:
    """Keep roughly independent samples of one window: subsample by the statistical inefficiency of θ - θ0.

    Args:
        theta_k: one window's time series, shape (n,), rad.
        theta0: its centre, rad.

    Returns:
        (the kept samples, shape (m,), rad; statistical inefficiency g >= 1).
    """
    timeseries = import_pymbar().timeseries
    x = wrap(theta_k - theta0)
    if np.ptp(x) == 0.0:
        return theta_k, 1.0
    with _quiet():
        g = float(timeseries.statistical_inefficiency(x))
        idx = timeseries.subsample_correlated_data(x, g=g)
    return theta_k[np.asarray(idx, dtype=int)], g


def umbrella_mbar(
    theta: np.ndarray,
    theta0: np.ndarray,
    k_kt: float,
    *,
    n_bins: int = 72,
    region: tuple[float, float] = ALPHA_L,
    decorrelate: bool = True,
) -> UmbrellaResult:
    """MBAR free-energy profile and region population from harmonic umbrella windows on a periodic coordinate.

    Args:
        theta: samples, shape (n_windows, n_per_window) (or a list of 1-D arrays of any lengths), rad.
        theta0: window centres, shape (n_windows,), rad.
        k_kt: force constant divided by kT, 1/rad^2.
        n_bins: equal bins over [-pi, pi).
        region: (lo, hi) rad with -pi <= lo < hi <= pi; its population is P(lo < θ < hi).
        decorrelate: thin each window to its statistical inefficiency first (for honest error bars).

    Raises:
        ValueError: shapes that do not match, or a bad region.
    """
    theta0 = np.asarray(theta0, dtype=np.float64)
    windows = [np.asarray(t, dtype=np.float64).reshape(-1) for t in theta]
    if len(windows) != theta0.shape[0] or any(w.size < 2 for w in windows):
        raise ValueError(
            f"need one series of >= 2 samples per window centre ({theta0.shape[0]}), got {len(windows)}"
        )
    if not -math.pi <= region[0] < region[1] <= math.pi:
        raise ValueError(f"region must be (lo, hi) with -pi <= lo < hi <= pi, got {region}")
    n_total = sum(w.size for w in windows)
    g = np.ones(len(windows))
    if decorrelate:
        kept = [thin(w, c) for w, c in zip(windows, theta0, strict=True)]
        windows, g = [k[0] for k in kept], np.array([k[1] for k in kept])
    samples = wrap(np.concatenate(windows))
    n_k = np.array([w.size for w in windows])
    pymbar = import_pymbar()
    with _quiet():
        mbar = pymbar.MBAR(reduced_bias(samples, theta0, k_kt), n_k)
        overlap = mbar.compute_overlap()["matrix"]
        unbiased = np.zeros(samples.size)
        p, p_err = _expectation(mbar, ((samples > region[0]) & (samples < region[1])).astype(float), unbiased)
        edges = np.linspace(-math.pi, math.pi, n_bins + 1)
        bins = np.clip(np.digitize(samples, edges) - 1, 0, n_bins - 1)
        dens = [_expectation(mbar, (bins == b).astype(float), unbiased) for b in range(n_bins)]
        f_k = mbar.compute_free_energy_differences(compute_uncertainty=False)["Delta_f"][0]
    prob, prob_err = np.array([d[0] for d in dens]), np.array([d[1] for d in dens])
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(prob > 0, -np.log(prob / (edges[1] - edges[0])), np.nan)
        f_err = np.where(prob > 0, prob_err / prob, np.nan)
    f = f - np.nanmin(f)
    k = len(windows)
    neighbour = min(overlap[i, (i + 1) % k] for i in range(k))
    dfe = -math.log(p / (1.0 - p)) if 0.0 < p < 1.0 else math.nan
    return UmbrellaResult(
        phi_grid=0.5 * (edges[1:] + edges[:-1]),
        free_energy_kt=f,
        free_energy_err=f_err,
        alpha_l_population=p,
        alpha_l_population_err=p_err,
        delta_f_kt=dfe,
        delta_f_err=p_err / (p * (1.0 - p)) if 0.0 < p < 1.0 else math.nan,
        n_samples=int(samples.size),
        n_samples_total=int(n_total),
        statistical_inefficiency=g,
        window_free_energies_kt=np.asarray(f_k, dtype=np.float64),
        min_neighbour_overlap=float(neighbour),
    )


def _expectation(mbar: Any, a_n: np.ndarray, u_n: np.ndarray) -> tuple[float, float]:
    """Unbiased expectation of ``a_n`` and its MBAR standard error (0, 0 when ``a_n`` is all zero)."""
    if not a_n.any():
        return 0.0, 0.0
    out = mbar.compute_expectations(a_n, u_kn=u_n)
    return float(np.ravel(out["mu"])[0]), float(np.ravel(out["sigma"])[0])


def population_halves(
    theta: np.ndarray, theta0: np.ndarray, k_kt: float, region: tuple[float, float] = ALPHA_L
) -> tuple[UmbrellaResult, UmbrellaResult]:
    """The analysis on the first and on the second half of every window (a convergence check).

    Args:
        theta: samples, shape (n_windows, n_per_window), rad.
        theta0: window centres, shape (n_windows,), rad.
        k_kt: force constant divided by kT, 1/rad^2.
        region: as in :func:`umbrella_mbar`.
    """
    theta = np.asarray(theta, dtype=np.float64)
    half = theta.shape[1] // 2
    return (
        umbrella_mbar(theta[:, :half], theta0, k_kt, region=region),
        umbrella_mbar(theta[:, half:], theta0, k_kt, region=region),
    )
