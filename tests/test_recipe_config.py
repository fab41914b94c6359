"""Recipe files: strict typed configs, scale presets, --set overrides, and the TOML round trip."""

import sys
import types
from dataclasses import dataclass, field

import pytest

from boltzflow.recipes import RUNNERS, ConfigError, dump_recipe, load_recipe, parse_override
from boltzflow.recipes.schema import build


@dataclass
class Stage:
    name: str
    epochs: int = 1
    lr: float = 1e-3

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


@dataclass
class Flow:
    kind: str = "realnvp"
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    clamp: float | None = None


@dataclass
class Config:
    system: dict = field(default_factory=dict)
    flow: Flow = field(default_factory=Flow)
    stages: list[Stage] = field(default_factory=list)
    n_samples: int = 100


RECIPE = """
name = "toy"
runner = "toy-runner"
description = "a toy"

[system]
name = "gmm40"

[flow]
hidden = [128, 128]

[[stages]]
name = "nll"
epochs = 20

[[stages]]
name = "kl"
lr = 1e-4

[scale.quick]
flow.hidden = [8]
n_samples = 10
stages = {0 = {epochs = 2}}
"""


@pytest.fixture()
def toy(tmp_path, monkeypatch):
    module = types.ModuleType("toy_runner_module")
    module.Config = Config
    monkeypatch.setitem(sys.modules, "toy_runner_module", module)
    monkeypatch.setitem(RUNNERS, "toy-runner", "toy_runner_module")
    path = tmp_path / "toy.toml"
    path.write_text(RECIPE)
    return path


def test_full_scale_is_the_file(toy):
    r = load_recipe(str(toy))
    assert r.config.flow.hidden == [128, 128] and r.config.n_samples == 100
    assert [s.epochs for s in r.config.stages] == [20, 1]
    assert r.config.stages[1].lr == 1e-4 and r.config.system == {"name": "gmm40"}


def test_preset_and_overrides(toy):
    r = load_recipe(str(toy), "quick", ["stages.1.epochs=7", "flow.clamp=2", "flow.kind=spline"])
    assert r.config.flow.hidden == [8] and r.config.n_samples == 10
    assert [s.epochs for s in r.config.stages] == [2, 7]
    assert r.config.flow.clamp == 2.0 and r.config.flow.kind == "spline"


def test_round_trip_through_print_config(toy, tmp_path):
    r = load_recipe(str(toy), "quick", ["flow.clamp=1.5"])
    again = tmp_path / "again.toml"
    again.write_text(dump_recipe(r))
    assert load_recipe(str(again)).config == r.config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["flow.hiden=[1]"], "unknown key 'flow.hiden'"),
        (["n_samples=1.5"], "n_samples must be an integer"),
        (["flow.hidden=3"], "flow.hidden must be a list"),
        (["flow.clamp=nan"], "flow.clamp must be finite"),
        (["stages.5.epochs=1"], "stages has 2 entries"),
        (["stages.0.epochs=0"], "epochs must be >= 1"),
        (["n_samples"], "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(toy, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_recipe(str(toy), "full", overrides)
    assert "\n" not in str(info.value)


def test_bad_files_name_the_file(toy, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(RECIPE.replace('name = "nll"', 'name = "nll'))
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_recipe(str(bad))
    typo = tmp_path / "typo.toml"
    typo.write_text(RECIPE.replace("n_samples = 10", "n_sample = 10"))
    with pytest.raises(ConfigError, match=r"typo.toml \[scale.quick\]|typo.toml: unknown key 'n_sample'"):
        load_recipe(str(typo), "quick")
    with pytest.raises(ConfigError, match="no scale preset 'huge'"):
        load_recipe(str(toy), "huge")
    with pytest.raises(ConfigError, match="no recipe"):
        load_recipe(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="is a folder"):
        load_recipe(str(tmp_path))


def test_build_rejects_bools_for_numbers_and_keeps_defaults():
    with pytest.raises(ConfigError, match="n_samples must be an integer"):
        build(Config, {"n_samples": True})
    assert build(Config, {}).flow == Flow()


def test_parse_override_reads_toml_values():
    assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    assert parse_override("x=hello") == {"x": "hello"}
    assert parse_override("x=1e-3") == {"x": 0.001}
