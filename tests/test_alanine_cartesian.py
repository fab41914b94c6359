"""Alanine dipeptide in Cartesian coordinates: alignment, standardisation, pairs, LJ, and a tiny full run."""

import json
import math

import numpy as np
import pytest
import torch

from boltzflow.io import load_npz
from boltzflow.systems import alanine_cartesian as ac


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[det < 0, :, 0] *= -1
    return q


def _noisy_frames(n: int, sd: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ac.reference_structure()[None] + sd * rng.normal(size=(n, 22, 3))


def test_pair_set_of_alanine_dipeptide():
    pairs = ac.nonbonded_pairs()
    assert pairs.shape == (174, 2)
    bonds = set(ac.topology_bonds())
    assert len(bonds) == 21
    nbr = {i: set() for i in range(22)}
    for a, b in bonds:
        nbr[a].add(b), nbr[b].add(a)
    got = {tuple(p) for p in pairs.tolist()}
    for i in range(22):
        for j in range(i + 1, 22):
            one_two = j in nbr[i]
            one_three = bool(nbr[i] & nbr[j])
            assert ((i, j) in got) == (not one_two and not one_three)
    # 1-4 pairs (three bonds apart) are included: e.g. along phi, C(ACE)-CA(ALA)... take any path i-a-b-j
    one_four = {
        (min(i, j), max(i, j)) for a, b in bonds for i in nbr[a] - {b} for j in nbr[b] - {a} if i != j
    }
    one_four -= {(min(a, b), max(a, b)) for a, b in bonds}
    assert one_four and one_four <= got


def test_bond_graph_pairs_on_a_chain():
    # chain 0-1-2-3-4: non-bonded (>= 3 bonds apart) pairs are (0,3), (0,4), (1,4)
    assert ac.bond_graph_pairs([[0, 1], [1, 2], [2, 3], [3, 4]], 5).tolist() == [[0, 3], [0, 4], [1, 4]]
    with pytest.raises(ValueError):
        ac.bond_graph_pairs([[0, 7]], 5)


def test_alignment_removes_rigid_motions():
    frames = _noisy_frames(30, 0.01, 0)
    rng = np.random.default_rng(1)
    rot = _random_rotations(30, rng)
    moved = np.einsum("nij,naj->nai", rot, frames) + rng.normal(size=(30, 1, 3))
    a = ac.align_to_mean(frames)
    b = ac.align_to_mean(moved)
    np.testing.assert_allclose(b.xyz, a.xyz, atol=1e-10)
    np.testing.assert_allclose(b.reference, a.reference, atol=1e-10)
    # the reference is the mean of the aligned frames (converged iteration) and centred at the origin
    np.testing.assert_allclose(a.xyz.mean(0), a.reference, atol=1e-6)
    np.testing.assert_allclose(a.reference.mean(0), 0.0, atol=1e-12)


def test_standardisation_round_trip():
    x = _noisy_frames(50, 0.02, 2).reshape(50, -1)
    st = ac.fit_standardizer(x)
    s = ac.standardize(x, st)
    np.testing.assert_allclose(s.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(s.std(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ac.unstandardize(s, st), x, rtol=0, atol=1e-15)


def test_paper_lj_energy_and_min_distance():
    sigma = 0.17
    x = torch.tensor([[0.0, 0.0, 0.0], [2 ** (1 / 6) * sigma, 0.0, 0.0], [0.0, sigma, 0.0]])
    pairs = np.array([[0, 1], [0, 2]])
    # minimum of the LJ well (-eps) and a pair at r = sigma (0)
    assert float(ac.paper_lj_energy(x, pairs)) == pytest.approx(-1.0, rel=1e-12)
    assert float(ac.paper_lj_energy(x, pairs[:1], sigma=sigma, epsilon=2.5)) == pytest.approx(-2.5, rel=1e-12)
    r = 0.2
    y = torch.tensor([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
    assert float(ac.paper_lj_energy(y, [[0, 1]])) == pytest.approx(4 * ((sigma / r) ** 12 - (sigma / r) ** 6))
    assert float(ac.min_distance(x, pairs)) == pytest.approx(sigma)


def test_pca_recovers_a_dominant_axis():
    rng = np.random.default_rng(0)
    axis = np.array([3.0, 4.0, 0.0]) / 5
    x = rng.normal(size=(2000, 1)) * 5 * axis + 0.1 * rng.normal(size=(2000, 3))
    pca = ac.fit_pca(x, 1)
    assert abs(pca.components[0] @ axis) == pytest.approx(1.0, abs=1e-3)
    assert ac.pca_project(x, pca).std() == pytest.approx(5.0, rel=0.05)


def test_tiny_run_writes_all_outputs(tmp_path):
    import mdtraj

    from boltzflow.experiments import alanine_cartesian as E
    from boltzflow.io import save_npz

    n = 120
    frames = _noisy_frames(n, 0.005, 3).astype(np.float32)
    data = tmp_path / "tiny.npz"
    save_npz(
        data,
        xyz=frames,
        energy_kj=np.zeros(n),
        forces_kj=np.zeros_like(frames),
        replica=np.zeros(n, np.int16),
        time_ps=np.arange(n, dtype=np.float32),
        temperature_kelvin=300.0,
    )
    out = tmp_path / "run"
    res = E.run(out, _config(data, 2, E.TRAINED), seed=0, progress=False)
    on_disk = json.loads((out / "results.json").read_text())
    names = [m["model"] for m in on_disk["models"]]
    assert names == ["data", "nll", "nll_reject", "penalty", "anneal", "smooth", "penalty_sum"]
    keys = {
        "model",
        "n_params",
        "min_r",
        "lj_max",
        "lj_mean",
        "energy_mean",
        "energy_median",
        "energy_frac_above_data_max",
        "pca_w2",
        "pca_w2_floor",
    }
    for row in on_disk["models"]:
        assert keys <= set(row)
    assert on_disk["models"][1]["n_params"] == on_disk["models"][2]["n_params"] > 0
    assert len(res["models"]) == 7
    for row in on_disk["models"][1:]:
        assert row["epochs_trained"] == 2 and row["stopped_at_deadline"] is False
    assert on_disk["config"]["device"] == "cpu" and on_disk["not_trained"] == []
    assert on_disk["samples_xtc"] is True
    table = (out / "table2.md").read_text()
    assert all(f"\n| {name} |" in table for name in names)
    for fig in ("fig4_min_r.png", "fig4_pca.png"):
        assert (out / "figures" / fig).stat().st_size > 0
    for name in names[1:]:
        xyz = load_npz(out / "samples" / f"{name}.npz")["xyz"]
        assert xyz.shape == (40, 22, 3) and xyz.dtype == np.float32
        traj = mdtraj.load(str(out / "samples" / f"{name}.xtc"), top=str(ac_pdb()))
        assert traj.n_atoms == 22 and traj.n_frames == 40
        assert (out / "checkpoints" / f"{name}.pt").exists() or name == "nll_reject"
    data_row = on_disk["models"][0]
    assert math.isfinite(data_row["lj_mean"]) and data_row["energy_frac_above_data_max"] == 0.0
    for row in on_disk["models"]:  # the one evaluation, on samples without weights
        ev = row["evaluation"]
        assert ev["weighted"] is False and "ess_fraction" not in ev and ev["n_draws"] == 4
        pops = {k: v["mean"] for k, v in ev["populations"].items()}
        assert pops == pytest.approx(row["basins"], abs=1e-12)
    assert data_row["evaluation"]["ramachandran_tv"] == pytest.approx(0.0, abs=1e-12)  # the reference itself
    assert "not the paper's 200" not in table  # a custom-sized run is not a reduced full-scale run


def test_table_states_reduced_epochs_of_a_full_scale_run():
    from boltzflow.experiments.cartesian_report import table2_markdown

    row = {
        "model": "nll", "min_r": 0.1, "lj_max": 1.0, "lj_mean": -10.0, "pca_w2": 0.5, "pca_w2_sd": 0.01,
        "pca_w2_floor": 0.1, "energy_mean": 1.0, "energy_median": 1.0, "energy_frac_above_data_max": 0.0,
        "frac_r_min_below_eps": 0.0, "basins": {"C7eq/beta": 0.5, "alphaR": 0.4, "alphaL": 0.05, "other": 0.05},
    }
    cfg = {
        "scale": "full", "train": {"epochs": 30}, "n_gen": 10, "w2_draws": 5, "w2_n": 2000, "lam": 5.0,
        "eps_nm": 0.17, "anneal_zero_fraction": 0.5, "smooth_width_nm": 0.01, "smooth_lam": 1.0,
        "reject_r_min_nm": 0.15,
    }
    assert "Trained for 30 epochs, not the paper's 200" in table2_markdown({"models": [row], "config": cfg})
    cfg["train"]["epochs"] = 200
    assert "not the paper's 200" not in table2_markdown({"models": [row], "config": cfg})


def ac_pdb():
    from boltzflow.energies.openmm_system import alanine_dipeptide_pdb

    return alanine_dipeptide_pdb()


def test_bad_input_is_refused_before_writing(tmp_path):
    from boltzflow.errors import BoltzflowError
    from boltzflow.experiments import alanine_cartesian as E
    from boltzflow.recipes import ConfigError

    with pytest.raises(ConfigError, match="models must be a non-empty subset"):
        _config(tmp_path / "x.npz", 1, ("nope",))
    with pytest.raises(BoltzflowError, match="dataset"):
        E.run(tmp_path / "b", _config(tmp_path / "missing.npz", 1, ("nll",)), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _tiny_dataset(tmp_path, n: int = 120):
    from boltzflow.io import save_npz

    frames = _noisy_frames(n, 0.005, 3).astype(np.float32)
    path = tmp_path / "tiny.npz"
    save_npz(
        path,
        xyz=frames,
        energy_kj=np.zeros(n),
        forces_kj=np.zeros_like(frames),
        replica=np.zeros(n, np.int16),
        time_ps=np.arange(n, dtype=np.float32),
        temperature_kelvin=300.0,
    )
    return path


def _config(data, epochs: int, models, *extra: str):
    """The smoke preset of the shipped recipe on ``data``, with ``epochs`` and ``models``."""
    from boltzflow.recipes import load_recipe

    names = ", ".join(f'"{m}"' for m in models)
    sets = [f"data.path={data}", f"stages.0.epochs={epochs}", f"models=[{names}]", "data.n_frames=100", *extra]
    return load_recipe("alanine-cartesian", "smoke", sets).config


class _Mode:
    training = True


def test_stop_at_deadline_stops_only_at_epoch_boundaries(capsys):
    import time

    from boltzflow.experiments.cartesian_training import DeadlineReached, StopAtDeadline

    calls = []

    def loss(flow, batch):
        calls.append(flow.training)
        return torch.zeros(())

    flow = _Mode()
    w = StopAtDeadline(loss, steps_per_epoch=3, start_epoch=2, epochs=9, deadline=time.monotonic() + 3600, log="t")
    w(flow, None)
    w.deadline = time.monotonic() - 1.0  # passes in the middle of epoch 3 (0-based 2)
    w(flow, None), w(flow, None)  # the epoch runs to its end
    flow.training = False
    w(flow, None)  # validation is never stopped and does not count
    assert w.calls == 3 and w.epoch == 3 and len(calls) == 4
    flow.training = True
    with pytest.raises(DeadlineReached):
        w(flow, None)
    assert len(calls) == 4  # the loss of the new epoch was not computed
    err = capsys.readouterr().err
    assert "t: epoch 3/9 starts" in err and "t: deadline reached, stopping after epoch 3/9" in err
    quiet = StopAtDeadline(loss, 1, 0, 5, deadline=None)
    for _ in range(4):
        quiet(flow, None)
    assert quiet.epoch == 4 and capsys.readouterr().err == ""


def test_deadline_scores_the_last_checkpoint_and_says_so(tmp_path):
    from boltzflow.experiments import alanine_cartesian as E
    from boltzflow.training.checkpoint import read_checkpoint

    data, out = _tiny_dataset(tmp_path), tmp_path / "run"
    got = E.run(out, _config(data, 1, ("nll",), "train_only=true"), progress=False)
    assert got["trained"]["nll"]["epochs_trained"] == 1 and not (out / "results.json").exists()
    res = E.run(out, _config(data, 3, ("nll", "penalty_sum"), "deadline_minutes=0"), progress=False)
    rows = {r["model"]: r for r in res["models"]}
    assert set(rows) == {"data", "nll", "nll_reject"} and res["not_trained"] == ["penalty_sum"]
    assert rows["nll"]["epochs_trained"] == rows["nll_reject"]["epochs_trained"] == 1
    assert rows["nll"]["stopped_at_deadline"] is True
    assert int(read_checkpoint(out / "checkpoints" / "nll.pt")["epoch"]) == 1  # nothing was trained on
    assert not (out / "checkpoints" / "penalty_sum.pt").exists()
    table = (out / "table2.md").read_text()
    assert "Stopped by the wall-clock deadline** before the planned 3 epochs: nll after 1 epochs" in table
    assert "**Not trained** (no epoch finished before the deadline): penalty_sum." in table
    assert "\n| nll | 1 |" in table and "\n| data | – |" in table


def test_train_only_processes_then_scoring_equal_one_call(tmp_path):
    from boltzflow.experiments import alanine_cartesian as E

    data, models = _tiny_dataset(tmp_path), ("nll", "penalty_sum")
    one = E.run(tmp_path / "one", _config(data, 2, models), progress=False)
    for m in models:  # what parallel processes do, one model each, into one folder
        E.run(tmp_path / "split", _config(data, 2, (m,), "train_only=true"), progress=False)
    split = E.run(tmp_path / "split", _config(data, 2, models, "deadline_minutes=0"), progress=False)
    keys = ("min_r", "lj_mean", "energy_mean", "pca_w2", "penalty_eq17_sum", "best_val_loss", "epochs_trained")
    for a, b in zip(one["models"], split["models"], strict=True):
        assert a["model"] == b["model"]
        assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}
    assert all(not r.get("stopped_at_deadline") for r in split["models"])


def test_device_and_deadline_options_are_checked_before_writing(tmp_path, capsys):
    from boltzflow.cli import main
    from boltzflow.errors import BoltzflowError
    from boltzflow.experiments.cartesian_training import resolve_device

    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    for bad, match in (("tpu", "not a device"), ("mps", "only cpu, cuda")):
        with pytest.raises(BoltzflowError, match=match):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(BoltzflowError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        with pytest.raises(BoltzflowError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    cuda_refusal = "runs on the CPU only" if torch.cuda.is_available() else "CUDA is not available"
    cases = [  # (arguments, message, exit code: 2 where argparse refuses the --device value itself)
        (["alanine-cartesian", "--device", "tpu"], "'tpu' is not a device", 2),
        (["two-particle", "--device", "cuda:0"], cuda_refusal, 1 if torch.cuda.is_available() else 2),
        (["alanine-cartesian", "--set", "deadline_minutes=-1"], "deadline_minutes must be a finite number >= 0", 1),
        (["two-particle", "--set", "train_only=true"], "unknown key 'train_only'", 1),
    ]
    for k, (args, message, code) in enumerate(cases):
        out = tmp_path / f"out{k}"
        try:
            rc = main(["reproduce", *args, "--out", str(out)])
        except SystemExit as stop:  # argparse refuses a bad --device value itself
            rc = stop.code
        err = capsys.readouterr().err
        assert rc == code, (args, err)
        assert message in err and err.count("\n") == 1
        assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_cpu_energies_and_writes_cpu_loadable_checkpoints(tmp_path):
    from boltzflow.experiments import alanine_cartesian as E
    from boltzflow.experiments.cartesian_report import energies_kj
    from boltzflow.training.checkpoint import read_checkpoint

    res = E.run(tmp_path / "run", _config(_tiny_dataset(tmp_path), 1, ("nll", "penalty_sum")), progress=False,
                device="cuda")
    assert res["config"]["device"].startswith("cuda") and res["not_trained"] == []
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "penalty_sum.pt")
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    energy = E._amber()
    xt = torch.as_tensor(_noisy_frames(50, 0.01, 5))
    np.testing.assert_allclose(energies_kj(energy, xt, device="cuda"), energies_kj(energy, xt), rtol=1e-10)
