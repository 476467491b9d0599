"""`spot oracle` and `spot transfer` (spot.experiments.oracle.experiment): a run reproduces its numbers, the shipped config
sections, the errors."""
import json

import numpy as np
import pandas as pd
import pytest

from spot import sample_positions
from spot.experiments.oracle import OracleSettings, TransferSettings, oracle_search, transfer

from helpers import spot_command

from .common import MEAN, SIZE, SMALL, STD, _settings, load_classifier, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_run_with_limit_reproduces_its_numbers(checkpoints, canvas, tmp_path):
    import yaml

    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({"oracle": SMALL}))
    outs = []
    for run in (1, 2):
        out = tmp_path / f"run{run}" / "oracle.csv"
        assert spot_command("oracle", "--config", "config.yaml", "--config", str(small), "--backbone", "a",
                             "--model", f"spot={checkpoints['a']}",
                             "--data", str(canvas), "--out", str(out), "--limit", "20", "--tables", "1,2,6",
                             "--device", "cpu") == 0
        outs.append(out)
    first, second = pd.read_csv(outs[0]), pd.read_csv(outs[1])
    pd.testing.assert_frame_equal(first, second)
    assert set(first.experiment) == {"table1", "table2", "table6"} and (first.n_images == 20).all()
    assert list(first.columns) == ["experiment", "backbone", "variant", "method", "placement", "init", "positions",
                                   "budget", "setting", "seed", "metric", "value", "n_images", "n_correct",
                                   "ci_low", "ci_high", "outcomes"]
    meta = json.loads(outs[0].with_suffix(".json").read_text())
    assert meta["provenance"]["config"]["oracle"]["limit"] == 20
    assert {"checkpoint:spot", "data:manifest"} <= set(meta["provenance"]["inputs"])
    assert meta["normalisation"]["spot"] == [MEAN, STD]
    assert meta["subsets"]["spot:test"]["kind"] == "stratified" and meta["subsets"]["spot:test"]["n_images"] == 20
    with np.load(outs[0].with_suffix(".trajectories.npz")) as t:
        assert t["positions"].shape == (1, 4, 3, 4, 2) and list(t["models"]) == ["a"]  # named by the backbone
        assert int(t["steps"]) == 3 and float(t["lr"]) == pytest.approx(3e-2)


def test_shipped_config_sections_parse():
    from spot.train.recipes import load_config, settings_from_dict

    for file in ("config.yaml", "config/paper.yaml"):
        config = load_config(file)
        o = settings_from_dict(OracleSettings, config["oracle"], "oracle").validate()
        t = settings_from_dict(TransferSettings, config["transfer"], "transfer").validate()
        assert [s.label for s in o.search_settings()] == ["lr=0.003,steps=5", "lr=0.01,steps=10"]
        assert o.main.label == "lr=0.01,steps=10" and t.budget == o.sparse_budget
    assert o.sparse_budget == 25 and o.saliency_window == 16 and o.limit is None


def test_clear_errors(checkpoints, canvas, batch, tmp_path):
    model = tiny_model()
    images, labels = batch
    init = sample_positions("isotropic", 4, len(labels), (SIZE, SIZE))
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        oracle_search(model, images, labels, init, lr=0.0, steps=3)
    with pytest.raises(ValueError, match="steps must be an int ≥ 1"):
        oracle_search(model, images, labels, init, lr=1e-2, steps=0)
    with pytest.raises(ValueError, match="oracle.priors: unknown placement 'nope'"):
        _settings(priors=["isotropic", "nope"])
    with pytest.raises(ValueError, match="unknown placement"):
        TransferSettings(prior="nope").validate()
    with pytest.raises(ValueError, match="token budget must be an int ≥ 1"):
        _settings(sparse_budget=0)
    with pytest.raises(ValueError, match="token budget must be an int ≥ 1"):
        _settings(budgets=[4, 0])
    with pytest.raises(ValueError, match="token budget must be an int ≥ 1"):
        TransferSettings(budget=0).validate()
    with pytest.raises(ValueError, match=r"oracle.settings\[1\]: lr must be"):
        _settings(settings=[{"lr": 1e-2, "steps": 2}, {"lr": -1, "steps": 2}])
    with pytest.raises(ValueError, match=r"oracle.settings\[0\]: steps must be"):
        _settings(settings=[{"lr": 1e-2, "steps": 0}], main_setting=0)
    with pytest.raises(ValueError, match="unknown key"):
        _settings(settings=[{"lr": 1e-2, "step": 2}], main_setting=0)
    with pytest.raises(ValueError, match="main_setting"):
        _settings(main_setting=2)
    with pytest.raises(ValueError, match="MAE checkpoint"):
        load_classifier(checkpoints["mae"])
    with pytest.raises(ValueError, match="at least 2 models"):
        transfer({"a": model}, None, TransferSettings(), OracleSettings())
    args = ("transfer", "--config", "config.yaml", "--model", f"a={checkpoints['a']}", "--data", str(canvas),
            "--out", str(tmp_path / "t.csv"))
    with pytest.raises(ValueError, match="at least 2 models"):
        spot_command(*args)
    base = ["oracle", "--config", "config.yaml", "--data", str(canvas), "--out", str(tmp_path / "o.csv")]
    with pytest.raises(ValueError, match="MAE checkpoint"):
        spot_command(*base, "--model", f"m={checkpoints['mae']}")
    with pytest.raises(ValueError, match="=PATH"):
        spot_command(*base, "--model", str(checkpoints["a"]))
    with pytest.raises(ValueError, match="unknown table"):
        spot_command(*base, "--model", f"a={checkpoints['a']}", "--tables", "1,4")
    assert not (tmp_path / "o.csv").exists()
