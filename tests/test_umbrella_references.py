"""The shipped umbrella/MBAR references of alanine dipeptide: every candidate loads, is self-consistent, matches
the committed run results, and the default is never a candidate whose seeds disagree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from boltzflow.systems.alanine import (
    DEFAULT_UMBRELLA,
    UMBRELLA_REFERENCES,
    describe_umbrella_reference,
    load_umbrella_reference,
)
from boltzflow.systems.registry import get_system

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"
# candidate -> the committed result file(s) it was made from
SOURCES = {
    "umbrella-0.5ns": [DOCS / "alanine-umbrella.json"],
    "umbrella-1ns": [DOCS / "alanine-umbrella-1ns.json"],
    "umbrella-2ns": [DOCS / "alanine-umbrella-2ns" / f"results-s{s}.json" for s in (10, 11)],
    "umbrella-4ns": [DOCS / "alanine-umbrella-4ns" / f"results-s{s}.json" for s in (10, 11)],
    "reus-2ns": [DOCS / "alanine-umbrella-reus" / f"results-s{s}.json" for s in (20, 21)],
}


def test_every_candidate_has_a_source():
    assert set(SOURCES) == set(UMBRELLA_REFERENCES)


@pytest.mark.parametrize("name", sorted(UMBRELLA_REFERENCES))
def test_candidate_loads_through_the_system_with_its_provenance(name):
    system = get_system("alanine-dipeptide")
    ref = system.reference(name)
    assert ref.kind == "free_energy" and ref.description == describe_umbrella_reference(name)
    data = ref.load()
    p, err = data["alpha_l_population"], data["alpha_l_population_err"]
    assert 0.0 < p < 1.0 and 0.0 < err < p
    assert f"{100 * p:.2f} +- {100 * err:.2f} %" in ref.description
    cfg = data["settings"]
    assert cfg["n_windows"] == 36 and cfg["k_kj_per_mol_rad2"] == 150.0 and cfg["temperature_kelvin"] == 300.0
    assert cfg["forcefield"] == ["amber99sbildn.xml", "amber99_obc.xml"]
    grid = np.asarray(data["phi_grid"])
    np.testing.assert_allclose(np.degrees(grid), data["phi_deg"], rtol=0, atol=1e-9)
    assert grid.shape == (72,) and len(data["free_energy_kt"]) == len(data["free_energy_err_kt"]) == 72


@pytest.mark.parametrize("name", sorted(UMBRELLA_REFERENCES))
def test_population_agrees_with_its_free_energy_profile(name):
    """P(0 < phi < 120 deg) from integrating exp(-F) over the grid equals the stored MBAR population (both come
    from the same MBAR weights; the 5 degree bins have edges at 0 and 120 degrees)."""
    data = load_umbrella_reference(name)
    phi = np.asarray(data["phi_deg"])
    f = np.array([math.inf if v is None else v for v in data["free_energy_kt"]])
    p_bin = np.exp(-f)
    in_region = (phi > 0.0) & (phi < 120.0)
    assert in_region.sum() == 24
    assert p_bin[in_region].sum() / p_bin.sum() == pytest.approx(data["alpha_l_population"], rel=1e-4)


@pytest.mark.parametrize("name", sorted(UMBRELLA_REFERENCES))
def test_shipped_candidate_matches_the_committed_run_results(name):
    data = load_umbrella_reference(name)
    sources = [json.loads(p.read_text()) for p in SOURCES[name]]
    if len(sources) == 1:
        assert {k: v for k, v in data.items() if k != "phi_grid"} == sources[0]
        return
    # pooled: each seed's own estimate, redone by combine.py, equals the `boltzflow umbrella` result of that run
    assert [r["seed"] for r in data["runs"]] == [s["settings"]["seed"] for s in sources] == data["settings"]["seeds"]
    for run, source in zip(data["runs"], sources, strict=True):
        assert run["alpha_l_population"] == pytest.approx(source["alpha_l_population"], rel=1e-9)
        assert run["alpha_l_population_err"] == pytest.approx(source["alpha_l_population_err"], rel=1e-9)
        assert source["settings"]["ns_per_window"] == data["settings"]["ns_per_window"]


@pytest.mark.parametrize("name", ["umbrella-2ns", "umbrella-4ns", "reus-2ns"])
def test_pooled_agreement_test_is_what_its_numbers_say(name):
    data = load_umbrella_reference(name)
    (p1, e1), (p2, e2) = [(r["alpha_l_population"], r["alpha_l_population_err"]) for r in data["runs"]]
    agreement = data["seed_agreement"]
    assert agreement["z"] == pytest.approx(abs(p1 - p2) / math.hypot(e1, e2), rel=1e-12)
    assert agreement["within_2_sigma"] == (agreement["z"] < 2.0)
    assert min(p1, p2) <= data["alpha_l_population"] <= max(p1, p2)


def test_default_is_never_a_candidate_whose_seeds_disagree():
    """The switch guard: `umbrella` may only point to a pooled candidate whose seeds agree within 2 sigma."""
    data = load_umbrella_reference(DEFAULT_UMBRELLA)
    if "seed_agreement" in data:
        assert data["seed_agreement"]["within_2_sigma"]
    system = get_system("alanine-dipeptide")
    assert system.reference("umbrella").load() == data
    assert system.reference("umbrella").description.startswith(f"= {DEFAULT_UMBRELLA}: ")


def test_unknown_candidate_and_vacuum_have_no_umbrella():
    with pytest.raises(ValueError, match="unknown umbrella reference 'umbrella-9ns'"):
        load_umbrella_reference("umbrella-9ns")
    assert get_system("alanine-dipeptide-vacuum").references() == {}
