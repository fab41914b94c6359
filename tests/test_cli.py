"""The command line: train -> sample -> evaluate, evaluate on sample's own molecule output, and a table of bad
inputs for train, sample and evaluate (one line on stderr, a non-zero exit, nothing written or changed)."""

import json
import math

import numpy as np
import pytest
import torch

from boltzflow.cli import main
from boltzflow.io import load_npz
from boltzflow.training.reporters import read_metrics


def _template(capsys) -> dict:
    assert main(["train", "--template", "two-particle"]) == 0
    config = json.loads(capsys.readouterr().out)
    config["data"] = "data.npz"
    config["flow"]["config"].update(hidden=[16], n_layers=2)
    config["train"].update(epochs=2, batch_size=128)
    return config


def _two_modes(n=300) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal([1, 0, -1, 0], 0.2, (n, 4)), rng.normal([-1, 0, 1, 0], 0.2, (n, 4))])


@pytest.fixture()
def setup(tmp_path, capsys):
    """A config and its data in tmp_path."""
    np.savez(tmp_path / "data.npz", x=_two_modes())
    (tmp_path / "config.json").write_text(json.dumps(_template(capsys)))
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny run (module-wide; tests only read it)."""
    root = tmp_path_factory.mktemp("trained")
    np.savez(root / "data.npz", x=_two_modes())
    from boltzflow.commands.train import template

    config = template("two-particle")
    config["data"] = "data.npz"
    config["flow"]["config"].update(hidden=[16], n_layers=2)
    config["train"].update(epochs=1, batch_size=128)
    (root / "config.json").write_text(json.dumps(config))
    assert main(["train", str(root / "config.json"), "--out", str(root / "run"), "--no-progress"]) == 0
    return root


def _run(args: list[str], capsys) -> tuple[int, list[str]]:
    """Exit code and stderr lines of one command (argparse errors exit through SystemExit)."""
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as err:
        code = err.code
    return code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_train_sample_evaluate_round_trip(setup, capsys):
    out = setup / "run"
    code, err = _run(["train", str(setup / "config.json"), "--out", str(out), "--no-progress", "--set",
                      "train.epochs=3"], capsys)
    assert code == 0 and err == []
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 3
    assert len(json.loads((out / "history.json").read_text())["history"]) == 3
    records = read_metrics(out / "metrics.jsonl")
    n_steps = 3 * math.ceil(540 / 128)  # 600 rows, 10 % held out
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(n_steps))
    ckpt = out / "checkpoint.safetensors"
    assert main(["sample", str(ckpt), "-n", "500", "--out", str(setup / "s.npz")]) == 0
    s = load_npz(setup / "s.npz")
    assert s["x"].shape == (500, 4) and s["log_prob"].shape == (500,)
    from boltzflow.energies.two_particle import TwoParticleCoulomb

    u = TwoParticleCoulomb().energy(torch.as_tensor(s["x"])).numpy()  # u = beta * U of the checkpoint's system
    np.testing.assert_allclose(s["energy"], u, rtol=1e-12)
    np.testing.assert_allclose(s["log_w"], -u - s["log_prob"], rtol=1e-12)
    assert main(["evaluate", str(ckpt), "--data", str(setup / "data.npz"), "-n", "600", "--w2-n", "200", "--draws",
                 "2", "--n-lipschitz", "200", "--out", str(setup / "m.json")]) == 0
    metrics = json.loads((setup / "m.json").read_text())
    assert metrics["w2_x"]["w2_floor"] > 0 and metrics["lip"] >= metrics["lip_q999"] > 0
    assert 0 < metrics["ess_fraction"] <= 1 and "observables_gen" in metrics


def test_evaluate_reads_what_sample_writes_for_the_shipped_molecule_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the shipped model is found by name from any folder
    assert main(["sample", "alanine-dipeptide-bg", "-n", "400", "--seed", "1", "--out", "s.npz"]) == 0
    s = load_npz("s.npz")
    assert s["xyz"].shape == (400, 22, 3) and s["x"].shape == (400, 66)
    np.savez("xyz_only.npz", xyz=s["xyz"])  # what `simulate` writes too: positions in nm, no flow coordinates
    code, err = _run(["evaluate", "alanine-dipeptide-bg", "--data", "xyz_only.npz", "-n", "400", "--seed", "2",
                      "--w2-n", "100", "--draws", "2", "--n-lipschitz", "0", "--out", "m.json"], capsys)
    assert code == 0 and err == []
    metrics = json.loads((tmp_path / "m.json").read_text())
    from boltzflow.training.checkpoint import load_flow

    flow, _ = load_flow("alanine-dipeptide-bg")
    with torch.no_grad():
        nll = -flow.log_prob(torch.as_tensor(s["xyz"], dtype=torch.float32).reshape(400, 66)).double().mean()
    assert metrics["nll_data"] == pytest.approx(float(nll), rel=1e-6)  # xyz flattened in the flow's atom order
    assert 0 < metrics["ess_fraction"] <= 1 and metrics["n_ref"] == 400
    assert metrics["w2_x"]["w2"] < 3 * metrics["w2_x"]["w2_floor"]  # the model's own samples: near the floor
    assert metrics["lipschitz"].startswith("skipped")
    np.savez("wrong_atoms.npz", xyz=s["xyz"][:, :21])
    code, err = _run(["evaluate", "alanine-dipeptide-bg", "--data", "wrong_atoms.npz", "--out", "m2.json"], capsys)
    assert code == 1 and len(err) == 1 and "(n, 22, 3)" in err[0] and not (tmp_path / "m2.json").exists()


def _bad_files(root):
    """Data files that are not usable training/reference data, named as in :data:`BAD_DATA`."""
    good = root / "good.npz"
    np.savez(good, x=_two_modes(50))
    (root / "empty.npz").write_bytes(b"")
    (root / "truncated.npz").write_bytes(good.read_bytes()[:200])
    np.savez(root / "pickled.npz", x=np.array([{"a": 1}, None], dtype=object))
    x = _two_modes(50)
    x[3, 1] = np.nan
    np.savez(root / "nan.npz", x=x)
    np.savez(root / "shape.npz", x=_two_modes(50)[:, :3])
    np.savez(root / "dtype.npz", x=np.full((100, 4), "a"))
    np.savez(root / "nokey.npz", y=_two_modes(50))
    np.savez(root / "norows.npz", x=np.zeros((0, 4)))
    (root / "adir.npz").mkdir()


BAD_DATA = ["empty", "truncated", "pickled", "nan", "shape", "dtype", "nokey", "norows", "adir", "missing"]
BAD_TRAIN_SETS = ["train.lr=-1", "train.lr=0", "train.lr=1e999", "train.lr=nan", "train.epochs=0",
                  "train.epochs=-3", "train.batch_size=0", "train.grad_clip=-1", "train.weight_decay=-1",
                  "train.val_fraction=1.0", "train.checkpoint_every=0", "train.lr_final_fraction=0",
                  "train.seed=-1", "system.beta=-1", "system.lam=inf", "flow.config.n_layers=0",
                  "flow.config.hidden=[-4]", "train.bogus=1", "system.name='nope'"]


@pytest.mark.parametrize("problem", BAD_DATA + BAD_TRAIN_SETS + ["out_is_file", "out_under_file"])
def test_train_rejects_bad_input_in_one_line_and_leaves_no_folder(setup, capsys, problem):
    _bad_files(setup)
    config = json.loads((setup / "config.json").read_text())
    out, args = setup / "run", []
    if problem in BAD_DATA:
        config["data"] = f"{problem}.npz"
    elif problem.startswith("out_"):
        (setup / "afile").write_text("sentinel")
        out = setup / "afile" if problem == "out_is_file" else setup / "afile" / "run"
    else:
        args = ["--set", problem]
    (setup / "c.json").write_text(json.dumps(config))
    before = _snapshot(setup)
    code, err = _run(["train", str(setup / "c.json"), "--out", str(out), "--no-progress", *args], capsys)
    assert code == 1 and len(err) == 1 and "error:" in err[0], err
    assert _snapshot(setup) == before  # no run folder, no partial output


def test_train_refuses_to_resume_with_other_data_and_reports_divergence(setup, capsys):
    out = setup / "run"
    assert _run(["train", str(setup / "config.json"), "--out", str(out), "--no-progress"], capsys)[0] == 0
    before = (out / "checkpoint.safetensors").read_bytes()
    np.savez(setup / "data.npz", x=_two_modes() + 0.01)
    code, err = _run(["train", str(setup / "config.json"), "--out", str(out), "--no-progress", "--set",
                      "train.epochs=4"], capsys)
    assert code == 1 and len(err) == 1 and "other data" in err[0]
    assert (out / "checkpoint.safetensors").read_bytes() == before
    code, err = _run(["train", str(setup / "config.json"), "--out", str(setup / "run2"), "--no-progress", "--set",
                      "train.lr=1e308"], capsys)
    assert code == 1 and len(err) == 1 and "lower the learning rate" in err[0]


SAMPLE_BAD = {
    "n_negative": ["-n", "-5"], "n_zero": ["-n", "0"], "n_nan": ["-n", "nan"], "n_inf": ["-n", "inf"],
    "n_float": ["-n", "1.5"], "batch_zero": ["--batch-size", "0"], "batch_negative": ["--batch-size", "-2"],
    "seed_negative": ["--seed", "-1"], "seed_nan": ["--seed", "nan"], "weights_bogus": ["--weights", "worst"],
    "threads_negative": ["--threads", "-1"], "unknown_option": ["--bogus"],
}
CKPT_BAD = ["ckpt_dir", "ckpt_empty", "ckpt_truncated", "ckpt_npz", "ckpt_missing"]
OUT_BAD = ["out_dir", "out_missing_folder", "out_under_file"]


def _bad_checkpoint(trained, tmp_path, problem):
    ckpt = trained / "run" / "checkpoint.safetensors"
    if problem == "ckpt_dir":
        return str(trained / "run")
    if problem == "ckpt_empty":
        (tmp_path / "e.safetensors").write_bytes(b"")
        return str(tmp_path / "e.safetensors")
    if problem == "ckpt_truncated":
        (tmp_path / "t.safetensors").write_bytes(ckpt.read_bytes()[:-100])
        return str(tmp_path / "t.safetensors")
    if problem == "ckpt_npz":
        return str(trained / "data.npz")
    if problem == "ckpt_missing":
        return str(tmp_path / "nope.safetensors")
    return str(ckpt)


def _bad_out(tmp_path, problem, sentinel):
    if problem == "out_dir":
        return str(tmp_path)
    if problem == "out_missing_folder":
        return str(tmp_path / "missing" / "s.npz")
    if problem == "out_under_file":
        return str(sentinel / "s.npz")
    return str(sentinel)


def _snapshot(root):
    """Every path under ``root`` with its bytes (None for folders)."""
    return {p.relative_to(root): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("problem", [*SAMPLE_BAD, *CKPT_BAD, *OUT_BAD])
def test_sample_rejects_bad_input_in_one_line_and_writes_nothing(trained, tmp_path, capsys, problem):
    sentinel = tmp_path / "sentinel.npz"
    sentinel.write_text("sentinel")
    ckpt = _bad_checkpoint(trained, tmp_path, problem)
    out = _bad_out(tmp_path, problem, sentinel)
    before = _snapshot(tmp_path)
    code, err = _run(["sample", ckpt, "-n", "10", "--out", out, *SAMPLE_BAD.get(problem, [])], capsys)
    assert code in (1, 2) and len(err) == 1 and "error:" in err[0], err
    assert _snapshot(tmp_path) == before  # the sentinel --out is untouched and nothing else appeared


EVALUATE_BAD = {
    **{k: v for k, v in SAMPLE_BAD.items() if k not in ("weights_bogus",)},
    "w2_zero": ["--w2-n", "0"], "w2_one": ["--w2-n", "1"], "w2_too_big": ["--w2-n", "400"],
    "draws_zero": ["--draws", "0"], "lipschitz_negative": ["--n-lipschitz", "-1"],
    "lipschitz_nan": ["--n-lipschitz", "nan"],
}


@pytest.mark.parametrize("problem", [*EVALUATE_BAD, *CKPT_BAD, *OUT_BAD, *[f"data_{d}" for d in BAD_DATA]])
def test_evaluate_rejects_bad_input_in_one_line_and_writes_nothing(trained, tmp_path, capsys, problem):
    _bad_files(tmp_path)
    sentinel = tmp_path / "sentinel.json"
    sentinel.write_text("sentinel")
    ckpt = _bad_checkpoint(trained, tmp_path, problem)
    data = tmp_path / f"{problem[5:]}.npz" if problem.startswith("data_") else trained / "data.npz"
    out = _bad_out(tmp_path, problem, sentinel)
    before = _snapshot(tmp_path)
    code, err = _run(["evaluate", ckpt, "--data", str(data), "-n", "300", "--w2-n", "100", "--draws", "1",
                      "--n-lipschitz", "50", "--out", out, *EVALUATE_BAD.get(problem, [])], capsys)
    assert code in (1, 2) and len(err) == 1 and "error:" in err[0], err
    assert _snapshot(tmp_path) == before


def test_unknown_command_and_option_fail_with_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        main(["fly"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        main(["sample", "x.pt", "--out", "y.npz", "--bogus"])
    assert err.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 2 and all("error:" in ln for ln in lines)


def test_reproduce_refuses_a_finished_run(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    assert main(["reproduce", "two-particle", "--quick", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("extra", [["--epochs", "3"], ["--models", "nll"], ["--alpha-l-seed-runs", "4"],
                                   ["--case", "eps0.1"], ["--train-only"]])
def test_reproduce_has_no_per_experiment_flags(tmp_path, capsys, extra):
    """The per-experiment flags became recipe keys (--set); the old spellings are refused in one line."""
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "two-particle", "--quick", "--out", str(tmp_path / "o"), *extra])
    assert err.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_reproduce_refuses_a_non_positive_epoch_count_and_an_empty_model_list(tmp_path, capsys):
    assert main(["reproduce", "alanine-cartesian", "--out", str(tmp_path / "o"), "--set", "stages.0.epochs=0"]) == 1
    assert "epochs must be an integer >= 1" in capsys.readouterr().err
    assert main(["reproduce", "alanine-cartesian", "--out", str(tmp_path / "o"), "--set", "models=[]"]) == 1
    assert "models must be a non-empty subset" in capsys.readouterr().err
    assert main(["reproduce", "alanine-bg", "--out", str(tmp_path / "o"), "--set", "data.alpha_l_seed_runs=-1"]) == 1
    assert "alpha_l_seed_runs must be a finite number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
