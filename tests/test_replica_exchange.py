"""Replica-exchange umbrella sampling: the swap kernel against the exact permutation distribution; a tiny run."""

import argparse
import itertools
import json

import numpy as np
import pytest

from boltzflow.errors import BoltzflowError
from boltzflow.io import load_npz
from boltzflow.samplers.replica_exchange import STATE, acceptance_summary, exchange, swap_pairs
from boltzflow.samplers.restraint import bias_energy_kj, window_centers
from boltzflow.samplers.umbrella import load_windows


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9])
def test_swap_pairs_are_disjoint_neighbours_that_cover_the_ring(n):
    seen = set()
    for parity in (0, 1):
        pairs = swap_pairs(n, parity)
        flat = pairs.ravel().tolist()
        assert len(flat) == len(set(flat)), "a pass may use each window once"
        assert all((j - i) % n == 1 for i, j in pairs.tolist())
        seen |= {tuple(p) for p in pairs.tolist()}
    expected = {(i, i + 1) for i in range(n - 1)} | ({(n - 1, 0)} if n % 2 == 0 and n > 2 else set())
    assert seen == expected


def _exact_permutation_law(theta, centers, k_kt):
    """P(window_of_replica = σ) ∝ exp(-Σ_r u(θ_r, c_σ(r))) over all permutations σ."""
    perms = list(itertools.permutations(range(len(centers))))
    logw = np.array([-bias_energy_kj(theta, centers[list(p)], k_kt).sum() for p in perms])
    w = np.exp(logw - logw.max())
    return perms, w / w.sum()


@pytest.mark.parametrize("n", [3, 4])
def test_exchange_samples_the_exact_permutation_distribution(n):
    """Repeated swap rounds at fixed angles leave the Boltzmann law of the bias energies on permutations."""
    rng = np.random.default_rng(5)
    centers = window_centers(n)
    theta = centers + rng.normal(0.0, 0.6, n)  # every replica a little away from its own centre
    k_kt = 2.0
    perms, exact = _exact_permutation_law(theta, centers, k_kt)
    index = {p: i for i, p in enumerate(perms)}
    counts = np.zeros(len(perms))
    attempts, accepts = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    state, gen, rounds = np.arange(n), np.random.default_rng(0), 40000
    for _ in range(rounds):
        state = exchange(theta, state, centers, k_kt, gen, 2, attempts, accepts)
        counts[index[tuple(state.tolist())]] += 1
    tv = 0.5 * np.abs(counts / rounds - exact).sum()
    assert tv < 0.02, (tv, exact)
    assert 0 < accepts.sum() < attempts.sum()
    n_pairs = len(swap_pairs(n, 0)) + len(swap_pairs(n, 1))
    assert attempts.sum() == rounds * n_pairs


def test_a_swap_that_lowers_both_biases_is_always_taken_and_a_hopeless_one_never():
    centers = window_centers(4)
    k_kt = 50.0
    theta = centers[[1, 0, 3, 2]]  # every replica sits exactly on its neighbour's centre
    attempts, accepts = np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64)
    out = exchange(theta, np.arange(4), centers, k_kt, np.random.default_rng(1), 1, attempts, accepts)
    assert out.tolist() == [1, 0, 3, 2] and accepts.tolist() == [1, 0, 1, 0]
    out = exchange(centers.copy(), np.arange(4), centers, 1e4, np.random.default_rng(1), 8, attempts, accepts)
    assert out.tolist() == [0, 1, 2, 3]
    summary = acceptance_summary(attempts, accepts, np.array([[0, 1], [1, 0], [2, 2], [3, 3]]))
    assert summary["windows_visited_per_replica"] == [2, 2, 1, 1]
    assert summary["acceptance_per_pair"][0] == pytest.approx(1 / 5)


def _run(argv):
    from boltzflow.commands import umbrella

    p = argparse.ArgumentParser()
    umbrella.add_arguments(p)
    return umbrella.run(p.parse_args(argv))


def test_tiny_run_resumes_bit_identically_and_is_read_as_umbrella_windows(tmp_path, capsys):
    base = ["alanine-dipeptide", "--windows", "6", "--k", "20", "--equilibrate-ps", "1", "--bins", "8",
            "--no-progress", "--solvent", "vacuum", "--exchange", "--seed", "3"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert _run([*base, "--out", str(whole), "--ns-per-window", "0.008"]) == 0
    assert _run([*base, "--out", str(parts), "--ns-per-window", "0.004"]) == 0
    assert _run([*base, "--out", str(parts), "--ns-per-window", "0.008"]) == 0
    assert "(24 new frames)" in capsys.readouterr().out  # 4 more frames in each of 6 windows
    a, b = load_npz(whole / STATE), load_npz(parts / STATE)
    for key in ("theta", "extra", "replica", "window_of_replica", "attempts", "accepts"):
        assert np.array_equal(a[key], b[key]), key
    w = load_windows(parts)
    assert w.theta.shape == (6, 8)
    np.testing.assert_allclose(w.theta0, window_centers(6))
    window = load_npz(parts / "window-02.npz")
    np.testing.assert_allclose(window["time_ps"], np.arange(1.0, 9.0))
    assert set(window["replica"].tolist()) <= set(range(6))
    # every frame of every window is one replica, and a replica is in one window at a time
    assert all(sorted(a["replica"][:, f].astype(int).tolist()) == list(range(6)) for f in range(8))
    manifest = json.loads((parts / "umbrella.json").read_text())
    assert manifest["config"]["exchange"] is True
    assert len(manifest["exchange"]["acceptance_per_pair"]) == 6
    assert sum(a["attempts"]) > 0 and json.loads((parts / "results.json").read_text())["n_samples_total"] == 48
    with pytest.raises(BoltzflowError, match="other settings"):  # a plain umbrella run cannot extend it
        _run([b for b in base if b != "--exchange"] + ["--out", str(parts), "--ns-per-window", "0.008"])


def test_plain_runs_keep_their_identity_and_a_broken_state_is_named(tmp_path):
    from boltzflow.energies.openmm_system import SOLVENTS, alanine_dipeptide_pdb
    from boltzflow.samplers.replica_exchange import _load_state
    from boltzflow.samplers.umbrella import UmbrellaConfig

    cfg = UmbrellaConfig(str(alanine_dipeptide_pdb()), SOLVENTS["vacuum"], (4, 6, 8, 14), (6, 8, 14, 16))
    assert "exchange" not in cfg.identity()  # manifests written before exchange existed still match
    assert UmbrellaConfig(**{**cfg.__dict__, "exchange": True}).identity()["exchange"] is True
    (tmp_path / STATE).write_bytes(b"not a zip")
    with pytest.raises(BoltzflowError, match="not a readable exchange state"):
        _load_state(tmp_path / STATE)
