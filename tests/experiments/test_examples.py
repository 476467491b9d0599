"""`spot examples` (spot.experiments.examples): the positions Figures 1–3 draw, measured as a result table."""
import json

import pandas as pd
import pytest
import torch

from helpers import make_canvas, spot_command
from spot.config import load_configs
from spot.data.fmnist import ARTICLE, CanvasConfig
from spot.experiments.examples import COLUMNS, example_positions, object_centre

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def canvas(tmp_path_factory):
    return make_canvas(tmp_path_factory, 200, 60, CanvasConfig(val_size=50))[0]


def test_the_table_holds_every_placement_of_figures_1_to_3(canvas, tmp_path):
    out = tmp_path / "examples.csv"
    assert spot_command("examples", "--config", "config/smoke.yaml", "--backbone", "cls_in1k", "--data", canvas,
                        "--out", out, "--images", "0,3") == 0
    table = pd.read_csv(out)
    assert tuple(table.columns) == COLUMNS and set(table.image) == {0, 3} and (table.patch == 8).all()
    per = table[table.image == 0].groupby(["figure", "placement", "positions"]).token.nunique()
    assert per[(1, "grid", "placed")] == 36  # a 6×6 grid at patch 8 on 48×48
    config = load_configs(["config/smoke.yaml"])
    sparse, budget = config["oracle"]["sparse_budget"], config["evaluation"]["budgets"][1]
    assert per[(1, "grid_random", "placed")] == per[(1, "center", "placed")] == sparse
    assert per[(3, "isotropic", "placed")] == budget
    assert per[(2, "object_centre", "placed")] == per[(2, "object_centre", "snapped")] == 1
    priors = {p for f, p, _ in per.index if f == 3}
    assert {"uniform", "isotropic", "center", "salient", "background", "boundary"} <= priors  # article masks here
    assert (table.value.between(0, 1)).all() and len(table) == 2 * len(table.drop_duplicates(
        ["image", "figure", "placement", "positions", "token"]))
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["provenance"]["config"]["images"] == [0, 3] and "data:manifest" in meta["provenance"]["inputs"]


def test_a_second_run_gives_the_same_positions_and_a_bad_backbone_is_named(canvas, tmp_path):
    tables = []
    for run in ("a", "b"):
        out = tmp_path / run / "examples.csv"
        spot_command("examples", "--config", "config/smoke.yaml", "--backbone", "mae_in1k", "--data", canvas,
                     "--out", out)
        tables.append(out.read_bytes())
    assert tables[0] == tables[1]
    with pytest.raises(ValueError, match="not a backbone of the config; accepted: cls_in1k"):
        spot_command("examples", "--config", "config/smoke.yaml", "--backbone", "vit", "--data", canvas,
                     "--out", tmp_path / "x.csv")


def test_the_object_centre_is_the_article_centre_on_a_canvas():
    class Data:
        extras = {"top_left": [[10, 20]]}

    centre = object_centre(Data(), 0, torch.zeros(1, 48, 48))
    assert torch.allclose(centre, torch.tensor([[(10 + ARTICLE / 2) / 48, (20 + ARTICLE / 2) / 48]],
                                               dtype=torch.float64))

    class Plain:
        extras = {}

    image = torch.zeros(1, 48, 48)
    image[0, 30:34, 10:14] = 1  # mass around (32, 12) pixels
    assert torch.allclose(object_centre(Plain(), 0, image), torch.tensor([[32 / 48, 12 / 48]], dtype=torch.float64))


def test_saliency_priors_are_left_out_without_maps():
    placements = example_positions(torch.zeros(1, 48, 48), torch.tensor([[0.5, 0.5]], dtype=torch.float64), (8, 8),
                                   sparse=4, budget=9, priors=["center", "salient"], saliency=None)
    assert [(f, p) for f, p, *_ in placements if f == 3] == [(3, "center")]
    snapped = [pos for f, p, kind, _, pos in placements if kind == "snapped"][0]
    assert torch.allclose(snapped, torch.tensor([[28 / 48, 28 / 48]], dtype=torch.float64))  # (24, 24) → cell centre


def test_figures_1_to_3_draw_the_table(canvas, tmp_path):
    from spot import paper

    out = tmp_path / "examples.csv"
    spot_command("examples", "--config", "config/smoke.yaml", "--backbone", "cls_in1k", "--data", canvas, "--out", out)
    inputs = {"examples": [str(out)], "data": [str(canvas / "manifest.json")]}
    sparse = load_configs(["config/smoke.yaml"])["oracle"]["sparse_budget"]
    titles = [ax.get_title() for ax in paper.build("figure1", inputs, "config/smoke.yaml").axes]
    assert titles == ["patch grid (36 tokens)", f"{sparse} random grid patches",
                      f"SPoT: {sparse} subpixel windows (Center)"]
    assert len(paper.build("figure2", inputs, "config/smoke.yaml").axes) == 2
    titles = [ax.get_title() for ax in paper.build("figure3", inputs, "config/smoke.yaml").axes]
    assert [t.split(" (")[0] for t in titles] == ["Uniform", "Gaussian", "Sobol", "Isotropic", "Center", "Salient",
                                                  "Background", "Boundary"]
