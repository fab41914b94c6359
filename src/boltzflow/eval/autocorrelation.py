"""Autocorrelation diagnostics of Markov chains: ρ(k), the integrated time τ_int, the inefficiency of a thinned chain.

Written by hand (about 20 lines of numpy) because the well-kept alternatives each do a different thing:
``pymbar.timeseries.statistical_inefficiency`` works on one series and stops at the first negative ρ, while the MCMC
references need the chain-averaged autocovariance of many parallel chains with Sokal's self-consistent window (as in
emcee), and the inefficiency at the thinning lag.
"""

from __future__ import annotations

import numpy as np


def autocorrelation(series: np.ndarray) -> np.ndarray:
    """Chain-averaged normalised autocorrelation ρ(k) of ``series`` (T, n_chains), k = 0..T−1 (FFT)."""
    z = series - series.mean(0)
    t = len(z)
    f = np.fft.rfft(z, n=2 * t, axis=0)
    acov = np.fft.irfft(f * np.conj(f), axis=0)[:t].mean(1) / t
    return acov / acov[0]


def integrated_time(rho: np.ndarray, c: float = 5.0) -> float:
    """τ_int = 1 + 2 Σ_{k=1}^{M} ρ(k) with Sokal's window: the smallest M with M >= c τ_int(M)."""
    taus = 2 * np.cumsum(rho) - 1
    window = np.arange(len(taus)) >= c * taus
    m = int(np.argmax(window)) if window.any() else len(taus) - 1
    return float(taus[m])


def thinned_time(rho: np.ndarray, lag: int) -> float:
    """1 + 2 Σ_{k>=1} ρ(k·lag), summed while ρ stays positive: the inefficiency of a chain thinned by ``lag``."""
    total = 1.0
    for r in rho[lag::lag]:
        if r <= 0:
            break
        total += 2 * float(r)
    return total


__all__ = ["autocorrelation", "integrated_time", "thinned_time"]
