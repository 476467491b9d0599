"""Oracle positions across models (spot.experiments.oracle.transfer): Table 4 and the cross-model controls."""
import itertools

import pandas as pd
import pytest

from helpers import spot_command
from spot.experiments.oracle import TransferSettings, transfer

from .common import (
    CONTROLS, ImageOnly, PositionsOnly, SMALL, TRANSFER_PROPORTIONS, _check_proportions, _four_class_data,
    _settings,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_transfer_covers_every_ordered_pair(checkpoints, canvas, tmp_path):
    import yaml

    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({"oracle": SMALL, "transfer": {"budget": 4, "prior": "isotropic", "budgets": [4]}}))
    out = tmp_path / "transfer.csv"
    assert spot_command("transfer", "--config", "config.yaml", "--config", small, "--model", f"a={checkpoints['a']}",
                        "--model", f"b={checkpoints['b']}", "--model", f"c={checkpoints['a']}", "--data", canvas,
                        "--out", out, "--limit", "12") == 0
    rows = pd.read_csv(out)
    assert _check_proportions(rows.to_dict("records"), TRANSFER_PROPORTIONS) == set(TRANSFER_PROPORTIONS)
    delta = rows[rows.metric == "transfer_delta"]
    assert sorted(zip(delta.source, delta.target)) == sorted(itertools.permutations("abc", 2))
    for (src, tgt), g in rows[rows.source != rows.target].groupby(["source", "target"]):
        v = dict(zip(g.metric, g.value))
        assert v["transfer_delta"] == pytest.approx(v["transfer_acc1"] - v["original_acc1"])
    # c is a copy of a: a's positions on c score a's own oracle accuracy; the original accuracy depends on the target
    own = rows[(rows.metric == "oracle_acc1")].set_index("source").value
    assert rows[(rows.source == "a") & (rows.target == "c") & (rows.metric == "transfer_acc1")].value.item() == own["a"]
    assert rows[rows.metric == "original_acc1"].groupby("target").value.nunique().eq(1).all()
    assert (rows.n_images == 12).all()


def test_cross_model_controls(canvas):
    """Positions searched towards random targets on a positions-only model carry the targets to its copy, and do
    nothing to a model that ignores positions; Table 4's rows are the transfer budget's, the others are controls."""
    data = _four_class_data(canvas)
    models = {"a": PositionsOnly(), "b": PositionsOnly(), "c": ImageOnly()}
    settings = TransferSettings(budget=4, budgets=[4, 9], random_target=True)
    records = transfer(models, data, settings, _settings(**CONTROLS))
    assert _check_proportions(records, TRANSFER_PROPORTIONS) == set(TRANSFER_PROPORTIONS)
    rows = pd.DataFrame(records)
    assert set(rows[rows.experiment == "table4"].budget) == {4}
    assert set(rows[rows.placement == "spot_on_random_target"].experiment) == {"controls"}
    assert set(rows[(rows.experiment == "controls") & (rows.placement == "spot_on")].budget) == {9}

    def v(src, tgt, metric, budget=9):
        return rows[(rows.source == src) & (rows.target == tgt) & (rows.metric == metric) &
                    (rows.budget == budget)].value.item()

    for budget in (4, 9):
        assert v("a", "a", "random_target_rate", budget) == v("a", "b", "random_target_rate", budget) == 100.0
        assert v("a", "c", "random_target_rate", budget) == v("a", "c", "random_target_rate_init", budget)
        assert v("a", "b", "transfer_acc1", budget) == 100.0 and v("b", "a", "transfer_acc1", budget) == 100.0
        assert v("a", "c", "transfer_delta", budget) == 0.0
    # without random targets: Table 4's rows and the cross-model oracle at the other budgets only
    plain = pd.DataFrame(transfer(models, data, TransferSettings(budget=4, budgets=[9]), _settings(**CONTROLS)))
    assert "spot_on_random_target" not in set(plain.placement)
    common = ["source", "target", "metric", "budget", "value"]
    merged = plain[common].merge(rows[common], on=common[:-1], suffixes=("", "_rt"))
    assert len(merged) == len(plain) and (merged.value == merged.value_rt).all()
