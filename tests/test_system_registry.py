"""The system registry and ``boltzflow systems``: every system listed with dimension, temperature, references."""

import json

import pytest
import torch

from boltzflow.cli import main
from boltzflow.systems.registry import get_system, system_names

EXPECTED = {"two-particle", "alanine-dipeptide", "alanine-dipeptide-vacuum", "gmm40", "manywell32", "dw4", "lj13"}


def test_registry_lists_at_least_the_seven_systems():
    names = system_names()
    assert EXPECTED <= set(names) and len(names) >= 7
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", ["gmm40", "manywell32", "dw4", "lj13"])
def test_model_systems_follow_the_contract(name):
    system = get_system(name)
    assert system.name == name and system.temperature_kelvin is None
    x = torch.randn(3, *system.event_shape, dtype=torch.float64)
    u = system.energy()(x)
    assert u.shape == (3,) and u.dtype == torch.float64
    torch.testing.assert_close(system.flat_energy()(x.flatten(1)), u)
    assert system.energy().force(x).shape == x.shape
    assert system.observables() and system.references()
    for obs in system.observables().values():
        assert len(obs.fn(x)) == 3
    summary = system.summary()
    json.dumps(summary, default=str)
    assert summary["dim"] == x[0].numel() and summary["coordinates"] == "cartesian"


def test_exact_samplers_and_log_z():
    for name, log_z in (("gmm40", 0.0), ("manywell32", None)):
        system = get_system(name)
        assert system.has_exact_sampler and system.log_z is not None
        if log_z is not None:
            assert system.log_z == log_z
        sampler = system.reference("exact").load()
        a = sampler(10, torch.Generator().manual_seed(0))
        b = sampler(10, torch.Generator().manual_seed(0))
        assert a.shape == (10, *system.event_shape) and torch.equal(a, b)
    for name in ("dw4", "lj13"):
        assert not get_system(name).has_exact_sampler and get_system(name).log_z is None


def test_unknown_system_and_bad_parameters_fail_with_a_message():
    with pytest.raises(ValueError, match="unknown system 'gmm41'; known systems:.*gmm40"):
        get_system("gmm41")
    with pytest.raises(ValueError, match="bad parameters for system 'lj13'"):
        get_system({"name": "lj13", "temperature": 2.0})


def test_systems_command_lists_every_system(capsys):
    assert main(["systems"]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert f"\n{name}: " in "\n" + out
    assert "reduced units" in out and "300 K" in out
    assert "exact log Z  0;" in out
    assert out.count("dimension") == len(system_names())


def test_systems_command_json_matches_the_summaries(capsys):
    assert main(["systems", "--json", "gmm40", "manywell32", "lj13"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["gmm40", "manywell32", "lj13"]
    assert data[0]["dim"] == 2 and data[0]["log_z"] == 0.0 and data[0]["exact_sampler"] is True
    assert data[1]["log_z"] == pytest.approx(get_system("manywell32").log_z)
    assert data[2]["com_free_dim"] == 36 and data[2]["temperature_kelvin"] is None
    assert "mcmc" in data[2]["references"]


def test_systems_command_unknown_name_is_one_line(capsys):
    assert main(["systems", "nosuch"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown system 'nosuch'" in err[0]


def test_systems_command_lists_the_reference_candidates_with_provenance(capsys):
    assert main(["systems", "--json", "alanine-dipeptide", "peptide:AAA"]) == 0
    alanine, aaa = json.loads(capsys.readouterr().out)
    names = {"md", "umbrella", "umbrella-0.5ns", "umbrella-1ns", "umbrella-2ns", "reus-2ns"}
    assert names <= set(alanine["references"])
    assert "md" in aaa["references"]
    system = get_system("alanine-dipeptide")
    for name in ("umbrella", "umbrella-2ns"):
        assert alanine["references"][name] == system.reference(name).description
