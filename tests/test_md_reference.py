"""The one OpenMM setup reproduces, bit for bit, the trajectories of the three setups it replaced.

``tests/data/md-reference-frames.npz`` was written by :func:`produce` running the code of ``main`` at commit
5cfc260 (before ``samplers/openmm_run.py`` existed), where ``samplers/md.py``, ``samplers/umbrella.py`` and
``samplers/seeded.py`` each built their own integrator, context and equilibration::

    PYTHONPATH=src python tests/test_md_reference.py --write

The public functions and their seeds are unchanged, so the same call must give the same bits today. The
Reference platform is deterministic for one OpenMM build; the fixture records its OpenMM version, and the test
is skipped (saying why) under another version, whose arithmetic may differ in the last bits.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

FIXTURE = Path(__file__).parent / "data" / "md-reference-frames.npz"


def produce(tmp: Path) -> dict[str, np.ndarray]:
    """Frames of a tiny plain-MD run (2 replicas), a 4-window umbrella run (then extended), and seeding runs."""
    from boltzflow.energies.openmm_system import SOLVENTS, alanine_dipeptide, alanine_dipeptide_pdb
    from boltzflow.io import load_npz
    from boltzflow.samplers.md import MDConfig, simulate
    from boltzflow.samplers.md_files import chunk_path
    from boltzflow.samplers.seeded import short_runs
    from boltzflow.samplers.umbrella import UmbrellaConfig, run_umbrella
    from boltzflow.systems.alanine import backbone_dihedral_indices

    out: dict[str, np.ndarray] = {}
    md = MDConfig(str(alanine_dipeptide_pdb()), SOLVENTS["obc"], ns=0.004, chunk_ps=2.0, equilibrate_ps=1.0,
                  replicas=2, seed=3)
    simulate(md, tmp / "md", progress=False)
    for r in range(2):
        for c in range(2):
            chunk = load_npz(chunk_path(tmp / "md", r, c))
            for key in ("xyz", "energy_kj", "forces_kj", "time_ps"):
                out[f"md_r{r}_c{c}_{key}"] = chunk[key]
    phi, psi = backbone_dihedral_indices()
    for ns in (0.003, 0.005):  # the second call extends every window from its checkpoint
        cfg = UmbrellaConfig(str(alanine_dipeptide_pdb()), SOLVENTS["vacuum"], phi, psi, n_windows=4,
                             ns_per_window=ns, equilibrate_ps=1.0, seed=4)
        run_umbrella(cfg, tmp / "umbrella", progress=False)
        for w in range(4):
            window = load_npz(tmp / "umbrella" / f"window-{w:02d}.npz")
            for key in ("theta", "extra", "time_ps", "final_xyz"):
                out[f"umbrella_{ns}_w{w}_{key}"] = window[key]
    mol = alanine_dipeptide(solvent="obc", constraints="HBonds")
    starts = np.stack([mol.positions, mol.positions + 0.001])
    out["seeded"] = short_runs(mol.system, starts, 3, save_every_ps=0.1, equilibrate_ps=0.1, seed=3)
    return out


def test_one_setup_reproduces_the_three_old_setups_bit_for_bit(tmp_path):
    from boltzflow.io import load_npz

    ref = load_npz(FIXTURE)
    if str(ref.pop("openmm_version")) != openmm.version.version:
        pytest.skip(f"fixture made with OpenMM {ref['openmm_version']}, this is {openmm.version.version}")
    got = produce(tmp_path)
    assert sorted(got) == sorted(ref)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    with tempfile.TemporaryDirectory() as d:
        arrays = produce(Path(d))
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, openmm_version=np.array(openmm.version.version), **arrays)
    print(f"wrote {FIXTURE}: {len(arrays)} arrays")
