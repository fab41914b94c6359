"""``simulate``, ``umbrella`` and ``energy`` against a catalogue of bad inputs.

Every case must end with exactly one line on stderr that names what to fix, a non-zero exit, and no file created
or changed under the test's folder (which holds a sentinel file, the inputs, and sometimes an existing output).
"""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltzflow.cli import main
from boltzflow.energies.openmm_system import alanine_dipeptide_pdb

PDB = alanine_dipeptide_pdb()
NUMBERS = {  # kind of option -> bad values
    "positive": ["0", "-1", "inf", "nan", "1e999", "two"],
    "non_negative": ["-1", "-inf", "inf", "nan"],
}


def _bad_numbers(options: dict[str, str]) -> list[tuple[str, str]]:
    return [(opt, value) for opt, kind in options.items() for value in NUMBERS[kind]]


SIMULATE_NUMBERS = {"--ns": "positive", "--temperature": "positive", "--timestep-fs": "positive",
                    "--save-every-ps": "positive", "--chunk-ps": "positive", "--friction": "non_negative",
                    "--equilibrate-ps": "non_negative"}
UMBRELLA_NUMBERS = {"--ns-per-window": "positive", "--k": "positive", "--temperature": "positive",
                    "--equilibrate-ps": "non_negative"}
COUNTS = {  # (command, option) -> bad values (whole numbers with a lower bound)
    ("simulate", "--replicas"): ["0", "-2", "1.5", "inf"],
    ("simulate", "--seed"): ["-1", "x"],
    ("umbrella", "--windows"): ["1", "0", "-3", "2.5"],
    ("umbrella", "--bins"): ["3", "0"],
    ("umbrella", "--seed"): ["-1"],
    ("umbrella", "--residue"): ["-1"],
    ("energy", "--chunk-size"): ["0", "-1", "nan"],
}


@pytest.fixture(scope="module")
def positions():
    """Three alanine frames near the PDB's structure, shape (3, 22, 3), nm."""
    from boltzflow.energies.openmm_system import build_molecule

    xyz = build_molecule(PDB, constraints="none").positions
    return xyz + np.random.default_rng(0).normal(0.0, 0.005, (3, *xyz.shape))


@pytest.fixture()
def folder(tmp_path, positions):
    """A folder with inputs (good and bad) and a sentinel; the test asserts it is unchanged afterwards."""
    shutil.copy(PDB, tmp_path / "mol.pdb")
    (tmp_path / "sentinel.txt").write_text("keep me")
    (tmp_path / "not-a-pdb.pdb").write_text("hello\nthis is no PDB\n")
    (tmp_path / "empty.pdb").write_text("")
    (tmp_path / "end-only.pdb").write_text("END\n")
    (tmp_path / "truncated.pdb").write_text(PDB.read_text()[:300])
    (tmp_path / "a-dir.pdb").mkdir()
    (tmp_path / "a-dir.npz").mkdir()
    xyz = positions.copy()
    np.savez(tmp_path / "frames.npz", xyz=xyz)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "frames.npz").read_bytes()[:200])
    (tmp_path / "text.npz").write_text("not a zip")
    np.savez(tmp_path / "pickled.npz", xyz=np.array([xyz, None], dtype=object))
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"xyz": xyz}))
    np.savez(tmp_path / "no-xyz.npz", x=xyz)
    np.savez(tmp_path / "flat.npz", xyz=xyz.reshape(len(xyz), -1))
    np.savez(tmp_path / "zero-frames.npz", xyz=xyz[:0])
    np.savez(tmp_path / "atoms21.npz", xyz=xyz[:, :21])
    np.savez(tmp_path / "strings.npz", xyz=np.full((2, 22, 3), "a"))
    np.savez(tmp_path / "complex.npz", xyz=xyz.astype(complex))
    nan = xyz.copy()
    nan[1, 4, 2] = np.nan
    np.savez(tmp_path / "nan.npz", xyz=nan)
    overlap = xyz.copy()
    overlap[0, 21] = overlap[0, 0]
    np.savez(tmp_path / "overlap.npz", xyz=overlap)
    (tmp_path / "existing.npz").write_bytes(b"old output")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("unrelated")
    (tmp_path / "broken-run").mkdir()
    (tmp_path / "broken-run" / "provenance.json").write_text("{not json")
    (tmp_path / "broken-run" / "umbrella.json").write_text("[1, 2]")
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _fails_in_one_line(argv: list[str], folder: Path, capsys, *words: str) -> str:
    before = _snapshot(folder)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as err:  # argparse refuses the value itself
        code = err.code
    err = capsys.readouterr().err.strip()
    assert code not in (0, None), f"{argv} succeeded"
    assert len(err.splitlines()) == 1, f"{argv}: {err}"
    for word in words:
        assert word in err, f"{argv}: {word!r} not in {err!r}"
    assert _snapshot(folder) == before, f"{argv} created or changed files"
    return err


def _simulate(folder: Path, *extra: str) -> list[str]:
    return ["simulate", "alanine-dipeptide", "--ns", "0.002", "--no-progress", "--out", str(folder / "new"), *extra]


def _umbrella(folder: Path, *extra: str) -> list[str]:
    return ["umbrella", "alanine-dipeptide", "--windows", "4", "--ns-per-window", "0.002", "--no-progress",
            "--out", str(folder / "new"), *extra]


def _energy(folder: Path, *extra: str, frames: str = "frames.npz") -> list[str]:
    return ["energy", "--pdb", str(folder / "mol.pdb"), "--in", str(folder / frames), "--out",
            str(folder / "e.npz"), *extra]


@pytest.mark.parametrize("option, value", _bad_numbers(SIMULATE_NUMBERS))
def test_simulate_numbers(folder, capsys, option, value):
    _fails_in_one_line([*_simulate(folder), option, value], folder, capsys, option)


@pytest.mark.parametrize("option, value", _bad_numbers(UMBRELLA_NUMBERS))
def test_umbrella_numbers(folder, capsys, option, value):
    _fails_in_one_line([*_umbrella(folder), option, value], folder, capsys, option)


@pytest.mark.parametrize("option, value", [("--temperature", v) for v in NUMBERS["positive"]])
def test_energy_numbers(folder, capsys, option, value):
    _fails_in_one_line([*_energy(folder), option, value], folder, capsys, option)


@pytest.mark.parametrize("command, option, value", [(c, o, v) for (c, o), vs in COUNTS.items() for v in vs])
def test_counts(folder, capsys, command, option, value):
    argv = {"simulate": _simulate, "umbrella": _umbrella, "energy": _energy}[command](folder)
    _fails_in_one_line([*argv, option, value], folder, capsys, option)


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--save-every-ps", "0.003"], ["--save-every-ps / --timestep-fs", "whole number"]),
        (["--chunk-ps", "1.5"], ["--chunk-ps / --save-every-ps"]),
        (["--ns", "0.0015"], ["--ns * 1000 / --save-every-ps"]),
        (["--timestep-fs", "1e-300"], ["too large"]),
        (["--platform", "Metal"], ["--platform"]),
        (["--constraints", "AllBonds"], ["--constraints"]),
        (["--forcefield", "amber99sbildn.xml"], ["--forcefield goes with --pdb"]),
        (["--solvent", "water"], ["--solvent"]),
        (["--pdb", "x.pdb"], ["not both"]),
    ],
)
def test_simulate_inconsistent_options(folder, capsys, extra, words):
    _fails_in_one_line([*_simulate(folder), *extra], folder, capsys, *words)


@pytest.mark.parametrize(
    "pdb, words",
    [("not-a-pdb.pdb", ["not a PDB file"]), ("empty.pdb", ["not a PDB file"]), ("end-only.pdb", ["PDB"]),
     ("truncated.pdb", ["not a PDB file"]), ("a-dir.pdb", ["directory"]), ("missing.pdb", ["not found"])],
)
@pytest.mark.parametrize("command", ["simulate", "energy"])
def test_bad_pdbs(folder, capsys, command, pdb, words):
    if command == "simulate":
        argv = ["simulate", "--pdb", str(folder / pdb), "--ns", "0.002", "--out", str(folder / "new")]
    else:
        argv = ["energy", "--pdb", str(folder / pdb), "--in", str(folder / "frames.npz"), "--out",
                str(folder / "e.npz")]
    _fails_in_one_line(argv, folder, capsys, pdb, *words)


@pytest.mark.parametrize("command", ["simulate", "umbrella"])
@pytest.mark.parametrize(
    "system, out, words",
    [
        ("alanine-dipeptide", "sentinel.txt", ["is a file"]),
        ("alanine-dipeptide", "sentinel.txt/sub", ["is a file, not a directory"]),
        ("alanine-dipeptide", "run", ["not empty"]),
        ("alanine-dipeptide", "broken-run", ["broken-run", ".json"]),
        ("no-such-system", "new", ["unknown system 'no-such-system'"]),
        ("two-particle", "new", ["not a molecule"]),
    ],
)
def test_systems_and_run_folders(folder, capsys, command, system, out, words):
    build = _simulate if command == "simulate" else _umbrella
    argv = build(folder)
    argv[1], argv[argv.index("--out") + 1] = system, str(folder / out)
    _fails_in_one_line(argv, folder, capsys, *words)


def test_simulate_needs_a_system_or_a_pdb(folder, capsys):
    _fails_in_one_line(["simulate", "--out", str(folder / "new")], folder, capsys, "SYSTEM", "--pdb")


def test_umbrella_residue_out_of_range(folder, capsys):
    _fails_in_one_line([*_umbrella(folder), "--residue", "1"], folder, capsys, "--residue 1", "ALA2")


@pytest.mark.parametrize(
    "frames, words",
    [
        ("empty.npz", ["not a readable .npz"]),
        ("truncated.npz", ["not a readable .npz"]),
        ("text.npz", ["not a readable .npz"]),
        ("pickled.npz", ["not a readable .npz"]),
        ("pickle.npz", ["not a readable .npz"]),
        ("no-xyz.npz", ["no array 'xyz'"]),
        ("flat.npz", ["expected frames of shape (n, n_atoms, 3)"]),
        ("zero-frames.npz", ["n >= 1"]),
        ("atoms21.npz", ["22 atoms"]),
        ("strings.npz", ["real numbers"]),
        ("complex.npz", ["real numbers"]),
        ("nan.npz", ["NaN/inf coordinates", "frame 1"]),
        ("overlap.npz", ["non-finite energy"]),
        ("a-dir.npz", ["directory"]),
        ("missing.npz", ["not found"]),
        ("mol.pdb", []),  # a PDB is a trajectory mdtraj reads: one frame, fine -> used below as a good case
    ],
)
@pytest.mark.parametrize("backend", ["torch", "openmm"])
def test_energy_frames(folder, capsys, frames, words, backend):
    argv = _energy(folder, "--backend", backend, frames=frames)
    if frames == "mol.pdb":
        assert main(argv) == 0 and (folder / "e.npz").is_file()
        return
    err = _fails_in_one_line(argv, folder, capsys, frames, *words)
    if frames == "overlap.npz":
        assert re.search(r"(frame|configuration) 0\b", err), err


@pytest.mark.parametrize(
    "out, words",
    [("a-dir.npz", ["is a directory"]), ("e.txt", ["must end in .npz"]), ("sentinel.txt/e.npz", ["is a file"])],
)
def test_energy_outputs(folder, capsys, out, words):
    argv = _energy(folder)
    argv[argv.index("--out") + 1] = str(folder / out)
    _fails_in_one_line(argv, folder, capsys, *words)


def test_energy_bad_input_leaves_an_existing_output_alone(folder, capsys):
    argv = _energy(folder, frames="nan.npz")
    argv[argv.index("--out") + 1] = str(folder / "existing.npz")
    _fails_in_one_line(argv, folder, capsys, "NaN")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), cut=st.integers(0, 10_000))
def test_frame_reader_never_raises_anything_but_a_one_line_error(tmp_path, data, cut):
    """Random bytes, and real npz files cut anywhere: the reader returns frames or raises BoltzflowError."""
    from boltzflow.commands.energy import load_frames
    from boltzflow.errors import BoltzflowError

    good = tmp_path / "good.npz"
    np.savez(good, xyz=np.zeros((2, 3, 3)))
    for i, blob in enumerate((data, good.read_bytes()[:cut], good.read_bytes()[:cut] + data)):
        path = tmp_path / f"f{i}.npz"
        path.write_bytes(blob)
        try:
            xyz = load_frames(str(path), str(PDB))
        except BoltzflowError as err:
            assert len(str(err).splitlines()) == 1
        else:
            assert xyz.dtype == np.float64 and xyz.ndim == 3 and xyz.shape[-1] == 3 and len(xyz) >= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(xyz=hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=4, max_side=4)))
def test_frame_reader_takes_only_real_frames(tmp_path, xyz):
    from boltzflow.commands.energy import load_frames
    from boltzflow.errors import BoltzflowError

    path = tmp_path / "x.npz"
    np.savez(path, xyz=xyz)
    ok = xyz.dtype.kind in "fiu" and xyz.ndim == 3 and xyz.shape[-1] == 3 and len(xyz) >= 1
    if ok:
        np.testing.assert_array_equal(load_frames(str(path), str(PDB)), xyz.astype(np.float64))
    else:
        with pytest.raises(BoltzflowError):
            load_frames(str(path), str(PDB))
