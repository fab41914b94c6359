"""The command line: train -> sample -> evaluate on a tiny problem, and one-line errors for bad input."""

import json

import numpy as np
import pytest
import torch

from boltzflow.cli import main
from boltzflow.io import load_npz


@pytest.fixture()
def tiny_setup(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([1, 0, -1, 0], 0.2, (300, 4)), rng.normal([-1, 0, 1, 0], 0.2, (300, 4))])
    np.savez(tmp_path / "data.npz", x=x)
    assert main(["train", "--template", "two-particle"]) == 0
    return tmp_path


def _write_config(path, capsys):
    main(["train", "--template", "two-particle"])
    config = json.loads(capsys.readouterr().out)
    config["data"] = "data.npz"
    config["flow"]["config"]["hidden"] = [16]
    config["flow"]["config"]["n_layers"] = 2
    config["train"].update(epochs=2, batch_size=128)
    (path / "config.json").write_text(json.dumps(config))
    return path / "config.json"


def test_train_sample_evaluate_round_trip(tiny_setup, capsys):
    cfg = _write_config(tiny_setup, capsys)
    out = tiny_setup / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress", "--set", "train.epochs=3"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 3
    assert len(json.loads((out / "history.json").read_text())["history"]) == 3
    assert main(["sample", str(out / "checkpoint.pt"), "-n", "500", "--out", str(tiny_setup / "s.npz")]) == 0
    s = load_npz(tiny_setup / "s.npz")
    assert s["x"].shape == (500, 4) and s["log_prob"].shape == (500,)
    # log_w = -u - log q with u = beta * U of the checkpoint's system
    from boltzflow.energies.two_particle import TwoParticleCoulomb

    u = TwoParticleCoulomb().energy(torch.as_tensor(s["x"])).numpy()
    np.testing.assert_allclose(s["energy"], u, rtol=1e-12)
    np.testing.assert_allclose(s["log_w"], -u - s["log_prob"], rtol=1e-12)
    capsys.readouterr()
    assert main(["evaluate", str(out / "checkpoint.pt"), "--data", str(tiny_setup / "data.npz"), "-n", "600",
                 "--w2-n", "200", "--draws", "2", "--n-lipschitz", "200", "--out", str(tiny_setup / "m.json")]) == 0
    metrics = json.loads((tiny_setup / "m.json").read_text())
    assert metrics["w2_x"]["w2_floor"] > 0 and metrics["lip"] >= metrics["lip_q999"] > 0
    assert "observables_gen" in metrics


def test_unknown_command_and_option_fail_with_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        main(["fly"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        main(["sample", "x.pt", "--out", "y.npz", "--bogus"])
    assert err.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 2 and all("error:" in ln for ln in lines)


def test_missing_and_corrupt_checkpoints(tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", str(tmp_path / "nope.pt"), "--out", str(out)]) == 1
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    assert main(["sample", str(tmp_path / "bad.pt"), "--out", str(out)]) == 1
    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    assert main(["sample", str(tmp_path / "foreign.pt"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "not found" in err[0] and "cannot read" in err[1] and "not a boltzflow" in err[2]
    assert not out.exists()


def test_bad_configs_and_data(tiny_setup, capsys):
    cfg = _write_config(tiny_setup, capsys)
    out = tiny_setup / "run"
    assert main(["train", str(cfg), "--out", str(out), "--set", "train.epoch=3"]) == 1
    assert main(["train", str(tiny_setup / "missing.json"), "--out", str(out)]) == 1
    (tiny_setup / "broken.json").write_text("{not json")
    assert main(["train", str(tiny_setup / "broken.json"), "--out", str(out)]) == 1
    x = load_npz(tiny_setup / "data.npz")["x"]
    x[3, 2] = np.nan
    np.savez(tiny_setup / "data.npz", x=x)
    assert main(["train", str(cfg), "--out", str(out)]) == 1
    np.savez(tiny_setup / "data.npz", x=x[:, :3])
    assert main(["train", str(cfg), "--out", str(out)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 5
    assert "unknown key" in errors[0] and "not found" in errors[1] and "not valid JSON" in errors[2]
    assert "NaN" in errors[3] and "shape (n, 4)" in errors[4]
    assert not (out / "checkpoint.pt").exists()


def test_reproduce_refuses_a_finished_run(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    assert main(["reproduce", "two-particle", "--quick", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--epochs", "3"], "--epochs is only available for alanine-cartesian"),
        (["--models", "nll"], "--models is only available for alanine-cartesian"),
        (["--alpha-l-seed-runs", "4"], "--alpha-l-seed-runs is only available for alanine-bg"),
    ],
)
def test_reproduce_refuses_cartesian_options_elsewhere(tmp_path, capsys, extra, message):
    assert main(["reproduce", "two-particle", "--quick", "--out", str(tmp_path / "o"), *extra]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_reproduce_refuses_a_non_positive_epoch_count_and_an_empty_model_list(tmp_path, capsys):
    assert main(["reproduce", "alanine-cartesian", "--out", str(tmp_path / "o"), "--epochs", "0"]) == 1
    assert "--epochs must be a positive integer" in capsys.readouterr().err
    assert main(["reproduce", "alanine-cartesian", "--out", str(tmp_path / "o"), "--models", " , "]) == 1
    assert "--models needs at least one" in capsys.readouterr().err
    assert main(["reproduce", "alanine-bg", "--out", str(tmp_path / "o"), "--alpha-l-seed-runs", "-1"]) == 1
    assert "--alpha-l-seed-runs must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
