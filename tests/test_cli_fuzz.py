"""The fuzz table: every command (but ``reproduce``/``run``, see test_recipes.py) against a catalogue of bad inputs.

The numeric options are read from each command's argparse parser (and, for ``train``, from the numeric leaves of
its config template), so a new option is fuzzed without touching this file; ``LEGITIMATE`` lists the values that
are valid for an option (those are not bad inputs). Every case asserts exactly one line on stderr, a non-zero exit
and no file created or changed under the test's folder, which holds the inputs, a sentinel file and the ``--out``
target. Runs in-process on tiny inputs; the bad value must be refused before any real work starts.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzflow.cli import COMMANDS, build_parser, main
from boltzflow.energies.openmm_system import alanine_dipeptide_pdb
from boltzflow.training.checkpoint import read_checkpoint, resolve_checkpoint, save_checkpoint

PDB = alanine_dipeptide_pdb()
MODEL = "alanine-dipeptide-bg"
EXCLUDED = {"reproduce", "run"}  # covered by tests/test_recipes.py
BAD_NUMBERS = ("-1", "0", "inf", "nan")
LEGITIMATE = {  # (command, option) -> values that are valid there
    ("*", "--seed"): {"0"},
    ("evaluate", "--n-lipschitz"): {"0"},
    ("simulate", "--friction"): {"0"},
    ("simulate", "--equilibrate-ps"): {"0"},
    ("umbrella", "--equilibrate-ps"): {"0"},
    ("umbrella", "--residue"): {"0"},
    ("train", "train.seed"): {"0"},
    ("train", "train.weight_decay"): {"0"},
    ("train", "system.softcore_eps"): {"0"},
    ("train", "system.lam"): {"0"},  # no Coulomb repulsion: two free particles in the double well
    ("train", "train.val_fraction"): {"0"},  # no validation split: the best epoch is the lowest training loss
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in action.choices.items() if name not in EXCLUDED}


def _is_numeric(action: argparse.Action) -> bool:
    if action.type is None or not action.option_strings:
        return False
    try:
        return isinstance(action.type("1"), int | float)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return False


def numeric_options() -> dict[str, list[str]]:
    """command -> its numeric options (the longest spelling), read from the parser."""
    return {name: [max(a.option_strings, key=len) for a in p._actions if _is_numeric(a)]
            for name, p in _subparsers().items()}


def _template() -> dict:
    from boltzflow.commands.train import template

    config = template("two-particle")
    config["data"] = "data.npz"
    config["flow"]["config"].update(hidden=[8], n_layers=2)
    config["train"].update(epochs=1, batch_size=64)
    return config


def config_numeric_keys(node: dict | None = None, prefix: str = "") -> list[str]:
    """Dotted keys of every numeric leaf (or list of numbers) of the train config template."""
    node = _template() if node is None else node
    keys = []
    for key, value in node.items():
        if isinstance(value, dict):
            keys += config_numeric_keys(value, f"{prefix}{key}.")
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int | float) or (isinstance(value, list) and value
                                                and all(isinstance(v, int | float) for v in value)):
            keys.append(prefix + key)
    return keys


def _legit(command: str, option: str, value: str) -> bool:
    return value in LEGITIMATE.get((command, option), set()) | LEGITIMATE.get(("*", option), set())


# --- inputs ------------------------------------------------------------------------------------------------------

def _frames(n: int = 300) -> np.ndarray:
    """``n`` alanine frames near the PDB structure, shape (n, 22, 3), nm."""
    from boltzflow.energies.openmm_system import build_molecule

    xyz = build_molecule(PDB, constraints="none").positions
    return xyz + np.random.default_rng(0).normal(0.0, 0.003, (n, *xyz.shape))


@pytest.fixture(scope="module")
def frames():
    return _frames()


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory):
    """Checkpoints with NaN weights and with a wrong-shape tensor, made from the shipped model."""
    root = tmp_path_factory.mktemp("ckpt")
    ckpt = read_checkpoint(resolve_checkpoint(MODEL))
    payload = {k: v for k, v in ckpt.items() if k not in ("format", "version") and v is not None}
    key = next(k for k, v in ckpt["model"].items() if v.dtype.is_floating_point and v.numel() > 1)
    for name, change in (("nan", lambda t: torch.full_like(t, float("nan"))), ("shape", lambda t: t[:1])):
        model = {k: (change(v) if k == key else v) for k, v in ckpt["model"].items()}
        save_checkpoint(root / f"{name}.safetensors", {**payload, "model": model, "best_model": model})
    return root


DATA_FILES = ("empty", "truncated", "text", "object", "pickle", "nan", "flat", "strings", "complex", "atoms21",
              "zero", "missing-key", "dir")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two sample shards of the shipped model (the input of ``merge``)."""
    root = tmp_path_factory.mktemp("shards")
    for k in range(2):
        assert main(["sample", MODEL, "-n", "10", "--shard", f"{k}/2", "--out", str(root)]) == 0
    return root


@pytest.fixture()
def folder(tmp_path, frames, bad_checkpoints, shards):
    """The test's folder: good and bad inputs, a sentinel, a folder of unrelated files; checked unchanged."""
    shutil.copy(PDB, tmp_path / "mol.pdb")
    (tmp_path / "sentinel.txt").write_text("keep me")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("unrelated")
    for name, text in (("not-a-pdb", "hello\nno PDB here\n"), ("empty", ""), ("end-only", "END\n")):
        (tmp_path / f"{name}.pdb").write_text(text)
    (tmp_path / "dir.pdb").mkdir()
    np.savez(tmp_path / "frames.npz", xyz=frames)
    _bad_data(tmp_path, "xyz", frames)
    x = np.random.default_rng(1).normal(size=(200, 4))
    np.savez(tmp_path / "data.npz", x=x)
    _bad_data(tmp_path / "train", "x", x)
    (tmp_path / "config.json").write_text(json.dumps(_template()))
    for name, text in (("empty", ""), ("text", "hello"), ("list", "[1, 2]")):
        (tmp_path / f"config-{name}.json").write_text(text)
    for name in ("nan", "shape"):
        shutil.copy(bad_checkpoints / f"{name}.safetensors", tmp_path / f"{name}.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "truncated.safetensors").write_bytes(resolve_checkpoint(MODEL).read_bytes()[:300])
    (tmp_path / "pickled.pt").write_bytes(pickle.dumps({"model": {}}))
    (tmp_path / "text.safetensors").write_text("not a checkpoint")
    (tmp_path / "dir.safetensors").mkdir()
    shutil.copytree(shards, tmp_path / "shards")
    return tmp_path


def _bad_data(root: Path, key: str, good: np.ndarray) -> None:
    """The data catalogue as ``root/<kind>.npz`` (key ``key``), made from good data."""
    root.mkdir(exist_ok=True)
    np.savez(root / "good.npz", **{key: good})
    (root / "empty.npz").write_bytes(b"")
    (root / "truncated.npz").write_bytes((root / "good.npz").read_bytes()[:200])
    (root / "text.npz").write_text("not a zip")
    np.savez(root / "object.npz", **{key: np.array([good, None], dtype=object)})
    (root / "pickle.npz").write_bytes(pickle.dumps({key: good}))
    nan = good.copy()
    nan.flat[7] = np.nan
    np.savez(root / "nan.npz", **{key: nan})
    np.savez(root / "flat.npz", **{key: good.reshape(len(good), -1)[:, :-1]})
    np.savez(root / "strings.npz", **{key: np.full(good.shape, "a")})
    np.savez(root / "complex.npz", **{key: good.astype(complex)})
    np.savez(root / "atoms21.npz", **{key: good[:, :-1]})
    np.savez(root / "zero.npz", **{key: good[:0]})
    np.savez(root / "missing-key.npz", other=good)
    (root / "dir.npz").mkdir()


# --- the table ---------------------------------------------------------------------------------------------------

def _base(command: str, f: Path) -> list[str]:
    """A valid, tiny invocation of ``command`` whose outputs would land under ``f``."""
    return {
        "train": ["train", str(f / "config.json"), "--out", str(f / "run"), "--no-progress"],
        "sample": ["sample", MODEL, "-n", "10", "--out", str(f / "s.npz")],
        "evaluate": ["evaluate", MODEL, "--data", str(f / "frames.npz"), "-n", "200", "--w2-n", "100", "--draws",
                     "1", "--n-lipschitz", "0", "--out", str(f / "e.json")],
        "simulate": ["simulate", "alanine-dipeptide", "--ns", "0.002", "--equilibrate-ps", "0", "--chunk-ps", "1",
                     "--no-progress", "--out", str(f / "md")],
        "energy": ["energy", "--pdb", str(f / "mol.pdb"), "--in", str(f / "frames.npz"), "--out", str(f / "u.npz")],
        "umbrella": ["umbrella", "alanine-dipeptide", "--windows", "2", "--ns-per-window", "0.001",
                     "--equilibrate-ps", "0", "--no-progress", "--out", str(f / "umbrella")],
        "systems": ["systems", "alanine-dipeptide"],
        "demo": ["demo", "-n", "10", "--draws", "2", "--no-progress", "--out", str(f / "demo")],
        "merge": ["merge", str(f / "shards"), "--out", str(f / "m.npz")],
    }[command]


def _replace(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option``'s value (or the first positional after the command) replaced."""
    if option in argv:
        i = argv.index(option) + 1
        return [*argv[:i], value, *argv[i + 1:]]
    return [argv[0], value, *argv[2:]]


def _config_case(key: str, value: float):
    def make(f: Path) -> list[str]:
        config = _template()
        *path, leaf = key.split(".")
        node = config
        for part in path:
            node = node[part]
        node[leaf] = [value] if isinstance(node[leaf], list) else value
        (f / "bad-config.json").write_text(json.dumps(config))
        return _replace(_base("train", f), "config", str(f / "bad-config.json"))
    return make


def _cases() -> dict[str, object]:
    """case id -> function(folder) -> argv (it may write the bad input into the folder first)."""
    cases: dict[str, object] = {}
    for command, options in numeric_options().items():
        for option in options:
            for value in BAD_NUMBERS:
                if not _legit(command, option, value):
                    cases[f"{command} {option} {value}"] = \
                        lambda f, c=command, o=option, v=value: [*_base(c, f), o, v]
    for key in config_numeric_keys():
        for value in BAD_NUMBERS:
            if not _legit("train", key, value):
                cases[f"train config {key}={value}"] = _config_case(key, float(value))
    for command in numeric_options():
        cases[f"{command} unknown option"] = lambda f, c=command: [*_base(c, f), "--bogus"]
    checkpoints = ("nan.safetensors", "shape.safetensors", "empty.safetensors", "truncated.safetensors",
                   "pickled.pt", "text.safetensors", "dir.safetensors", "missing.safetensors", "mol.pdb")
    for command in ("sample", "evaluate"):
        for name in checkpoints:
            cases[f"{command} checkpoint {name}"] = lambda f, c=command, n=name: _replace(_base(c, f), c, str(f / n))
    for kind in (*DATA_FILES, "absent"):
        cases[f"evaluate --data {kind}"] = lambda f, k=kind: _replace(_base("evaluate", f), "--data",
                                                                      str(f / f"{k}.npz"))
        cases[f"energy --in {kind}"] = lambda f, k=kind: _replace(_base("energy", f), "--in", str(f / f"{k}.npz"))
        cases[f"train data {kind}"] = lambda f, k=kind: _train_data(f, k)
    for pdb in ("not-a-pdb.pdb", "empty.pdb", "end-only.pdb", "dir.pdb", "absent.pdb", "frames.npz"):
        cases[f"energy --pdb {pdb}"] = lambda f, p=pdb: _replace(_base("energy", f), "--pdb", str(f / p))
        cases[f"simulate --pdb {pdb}"] = lambda f, p=pdb: ["simulate", "--pdb", str(f / p),
                                                           *_base("simulate", f)[2:]]
    for name in ("config-empty.json", "config-text.json", "config-list.json", "dir.pdb", "absent.json"):
        cases[f"train config file {name}"] = lambda f, n=name: _replace(_base("train", f), "config", str(f / n))
    cases["train --set unknown key"] = lambda f: [*_base("train", f), "--set", "train.bogus=1"]
    cases["train --set unknown section"] = lambda f: [*_base("train", f), "--set", "bogus.lr=1"]
    cases["train config unknown key"] = _config_extra_key
    for command in ("sample", "evaluate", "energy", "merge"):
        cases[f"{command} --out is a folder"] = lambda f, c=command: _replace(_base(c, f), "--out", str(f / "out"))
        cases[f"{command} --out under a file"] = lambda f, c=command: _replace(_base(c, f), "--out",
                                                                               str(f / "sentinel.txt" / "x"))
    for command in ("train", "simulate", "umbrella", "demo"):
        cases[f"{command} --out is a file"] = lambda f, c=command: _replace(_base(c, f), "--out",
                                                                            str(f / "sentinel.txt"))
    for name in ("nope", "peptide:ZZZ"):
        cases[f"systems {name}"] = lambda f, n=name: ["systems", n]
        cases[f"simulate system {name}"] = lambda f, n=name: _replace(_base("simulate", f), "simulate", n)
        cases[f"umbrella system {name}"] = lambda f, n=name: _replace(_base("umbrella", f), "umbrella", n)
    return cases


def _train_data(f: Path, kind: str) -> list[str]:
    config = {**_template(), "data": f"train/{kind}.npz"}
    (f / "bad-config.json").write_text(json.dumps(config))
    return _replace(_base("train", f), "config", str(f / "bad-config.json"))


def _config_extra_key(f: Path) -> list[str]:
    config = _template()
    config["train"]["bogus"] = 1
    (f / "bad-config.json").write_text(json.dumps(config))
    return _replace(_base("train", f), "config", str(f / "bad-config.json"))


CASES = _cases()


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _failure(case: str, argv: list[str], folder: Path, capsys) -> str | None:
    """Why ``case`` broke the contract, or None when it failed properly."""
    before = _snapshot(folder)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as err:  # argparse refused the value itself
        code = err.code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    if code in (0, None):
        return f"{case}: exit 0"
    if len(lines) != 1 or "error" not in lines[0]:
        return f"{case}: stderr {lines}"
    if _snapshot(folder) != before:
        return f"{case}: created or changed files"
    return None


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - EXCLUDED))
def test_bad_input_fails_in_one_line_and_writes_nothing(command, folder, capsys):
    """All cases of one command in one test (the suite's per-test garbage collection would dominate a table of
    ~300 single-case tests); every failing case is listed."""
    cases = {case: make for case, make in CASES.items() if case.split()[0] == command}
    assert cases
    failures = [why for case, make in cases.items() if (why := _failure(case, make(folder), folder, capsys))]
    assert not failures, "\n".join(failures)


def test_the_table_covers_every_command_and_every_numeric_option():
    covered = {c.split()[0] for c in CASES}
    assert covered == set(COMMANDS) - EXCLUDED
    for command, options in numeric_options().items():
        assert options, command  # at least --threads
        for option in options:
            assert any(c.startswith(f"{command} {option} ") for c in CASES), (command, option)
    assert "train.lr" in config_numeric_keys() and "flow.config.hidden" in config_numeric_keys()


def test_base_invocations_are_valid():
    """The bad cases differ from a parseable invocation only in the bad input (a typo in a base would make
    every case pass for the wrong reason)."""
    parsers = _subparsers()
    f = Path("/nonexistent")
    for command in parsers:
        parsers[command].parse_args(_base(command, f)[1:])


@pytest.mark.parametrize("command", ["train", "sample", "evaluate", "energy", "systems", "merge"])
def test_cheap_base_invocations_succeed(command, folder, capsys):
    """Positive control: without the bad input the invocation works, so each case fails for its bad input only
    (simulate, umbrella and demo are too slow to run here; their bases are parsed above)."""
    assert main(_base(command, folder)) == 0, capsys.readouterr().err
