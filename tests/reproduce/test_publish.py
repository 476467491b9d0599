"""spot publish (a finished run → reference/<preset>/) and spot audit on the published reference: the chain walks from
a published table back to the checkpoint records and the data manifest without the weights or the data splits."""
import json
from pathlib import Path

import pandas as pd
import pytest

from spot import paper
from spot.reproduce.audit import audit, find_root, run_from_args
from spot.provenance import sha256_file
from spot.reproduce.publish import MARKER, publish
from spot.results import input_checksums, write_table

CLEAN = {"package": "0", "git_commit": "a" * 40, "git_dirty": False}


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A tiny finished run of preset `p` under tmp_path/run, every path recorded relative to it, as the workflow
    records them: a data manifest and split, a parent and a model checkpoint with records, a result table and one
    table of the paper built from it."""
    root = tmp_path / "run"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setattr("spot.provenance.code_version", lambda: dict(CLEAN))
    data = Path("results/p/data")
    data.mkdir(parents=True)
    (data / "test.npz").write_bytes(b"test split")
    (data / "manifest.json").write_text(json.dumps(
        {"splits": {"test": {"file": "test.npz", "sha256": sha256_file(data / "test.npz")}}}))
    models = Path("results/p/models")
    models.mkdir()
    for name, parent in (("parent", None), ("model", "parent")):
        weights = models / f"{name}.safetensors"
        weights.write_bytes(f"{name} weights".encode())
        inputs = input_checksums({"parent": models / f"{parent}.safetensors"} if parent else {}, data)
        (models / f"{name}.json").write_text(json.dumps(
            {"sha256": sha256_file(weights), "recipe": {"name": name},
             "provenance": {"code": CLEAN, "inputs": inputs}}))
    result = write_table([{"model": "m", "value": 41.5}], "results/p/evaluation/m.csv", config={"seed": 3}, seed=3,
                         inputs=input_checksums({"m": models / "model.safetensors"}, data))
    table = pd.DataFrame({"Prior": ["Isotropic"], "Acc@1": [41.5]})
    paper.write_table_files(table, "paper_figures/p", "table5", inputs=[result], config={"evaluation": {"seeds": [0]}})
    return root


def test_publish_copies_the_small_files_and_audit_walks_them(run, capsys):
    marker = publish("p", run, expected=["table5.csv"])
    ref = marker.parent
    assert ref == run / "reference" / "p"
    meta = json.loads(marker.read_text())
    assert meta["commits"] == ["a" * 40] and "results/p/models/model.json" in meta["files"]
    assert (ref / "paper_figures/p/table5.md").is_file() and (ref / "results/p/evaluation/m.json").is_file()
    assert not list(ref.rglob("*.safetensors")) and not (ref / "results/p/data/test.npz").exists()

    table = ref / "paper_figures/p/table5.csv"
    assert find_root(table) == (ref.resolve(), True)
    links, value = audit(table, row=0, column="Acc@1")
    assert value == "41.5" and not [link for link in links if link.broken]
    status = {Path(link.path).name: link.status for link in links}
    assert status["model.safetensors"] == status["parent.safetensors"] == status["test.npz"] == "unpublished"
    assert status["model.json"] == status["parent.json"] == status["manifest.json"] == status["table5.md"] == "ok"
    # every path resolved inside the reference, none in the run it was copied from
    assert all(str(ref.resolve()) in link.path for link in links)
    prov = json.loads((ref / "paper_figures/p/table5.provenance.json").read_text())["provenance"]
    assert prov["config"] == {"evaluation": {"seeds": [0]}} and prov["seed"] == {"evaluation.seeds": [0]}

    assert status["table5.provenance.json"] == "ok"  # the root, against PUBLISHED.json

    class Args:
        path, row, column, strict = str(table), None, None, True

    assert run_from_args(Args) == 0  # --strict: every link was checked
    assert "not published" in capsys.readouterr().out


@pytest.mark.parametrize("edit", ["table", "markdown", "record", "origin", "sidecar", "root"])
def test_audit_of_the_reference_catches_an_edited_file(run, edit):
    ref = publish("p", run, expected=["table5.csv"]).parent
    path = {"table": "paper_figures/p/table5.csv", "markdown": "paper_figures/p/table5.md",
            "record": "results/p/models/model.json", "origin": "results/p/models/parent.json",
            "sidecar": "results/p/evaluation/m.json", "root": "paper_figures/p/table5.provenance.json"}[edit]
    target = ref / path
    if edit == "record":  # the record now describes other weights than the result was computed from
        rec = json.loads(target.read_text())
        target.write_text(json.dumps({**rec, "sha256": "0" * 64}))
    elif edit == "origin":  # a parent's record says it came from elsewhere
        target.write_text(json.dumps({**json.loads(target.read_text()), "origin": "elsewhere"}))
    elif edit == "root":  # the table's provenance says another seed
        target.write_text(target.read_text().replace('"seed"', '"seed_"'))
    else:
        target.write_text(target.read_text() + "\nedited")
    links, _ = audit(ref / "paper_figures/p/table5.csv")
    assert [link for link in links if link.broken]


def test_publish_refuses_a_dirty_or_incomplete_run(run, monkeypatch):
    with pytest.raises(ValueError, match="incomplete: figure9.pdf"):
        publish("p", run, expected=["table5.csv", "figure9.pdf"])
    with pytest.raises(ValueError, match="no run of preset 'q'"):
        publish("q", run)
    side = run / "results/p/evaluation/m.json"
    meta = json.loads(side.read_text())
    meta["provenance"]["code"]["git_dirty"] = True
    side.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="uncommitted changes"):
        publish("p", run, expected=["table5.csv"])
    assert not (run / "reference" / "p").exists()  # nothing half-published


def test_a_missing_run_output_points_to_the_published_reference(run):
    publish("p", run, expected=["table5.csv"])
    (run / "paper_figures/p/table5.csv").unlink()
    with pytest.raises(FileNotFoundError, match="reference/p/paper_figures/p/table5.csv"):
        audit(Path("paper_figures/p/table5.csv"))


def test_a_finished_run_is_expected_to_have_the_artifacts_of_what_it_measured(tmp_path):
    """As the workflow's targets: a run without token pruning (paper_official) has no pruning tables to publish; the
    findings table does without any kind."""
    from spot.reproduce.publish import expected_outputs

    results = tmp_path / "results" / "p"
    (results / "evaluation").mkdir(parents=True)
    (results / "evaluation" / "b.csv").write_text("value\n1\n")
    expected = expected_outputs(results)
    assert "table8.csv" in expected and "findings.csv" in expected
    assert "pruning_table1.csv" not in expected and "table5.csv" not in expected  # table5 also reads the oracle
    (results / "pruning").mkdir()
    (results / "pruning" / "b.csv").write_text("value\n1\n")
    assert "pruning_ablations.csv" in expected_outputs(results)


def test_strict_fails_on_a_link_without_a_recorded_checksum(run, capsys):
    """A result written before record checksums: its checkpoint record is unchecked — reported, and a failure with
    --strict."""
    side = run / "results/p/evaluation/m.json"
    meta = json.loads(side.read_text())
    del meta["provenance"]["inputs"]["checkpoint:m"]["record_sha256"]
    side.write_text(json.dumps(meta))
    paper.write_table_files(pd.DataFrame({"Acc@1": [41.5]}), "paper_figures/p", "table5",
                            inputs=["results/p/evaluation/m.csv"])

    class Args:
        path, row, column, strict = "paper_figures/p/table5.csv", None, None, False

    assert run_from_args(Args) == 0 and "1 unchecked" in capsys.readouterr().out
    Args.strict = True
    assert run_from_args(Args) == 1 and "--strict: 1 link(s) could not be checked" in capsys.readouterr().out


def test_the_seed_spread_audits_across_the_three_references_it_read(tmp_path):
    """spot spread read the records of three published references: its chain is walked into each from that
    reference's own root (down to the seed runs' checkpoint records), and a changed record of one of them breaks it."""
    import shutil

    from spot.reproduce.audit import verdict

    root = Path(__file__).resolve().parents[2]
    for name in ("embedded", "embedded_seed1", "embedded_seed2"):
        shutil.copytree(root / "reference" / name, tmp_path / "reference" / name)
    spread = tmp_path / "reference" / "embedded" / "seed_spread.csv"
    links, _ = audit(spread)
    assert verdict(links)[0] == 0
    for name in ("embedded", "embedded_seed1", "embedded_seed2"):
        assert any(f"/reference/{name}/results/{name}/pruning/cls_in21k.csv" in link.path and link.status == "ok"
                   for link in links), name
    assert any(link.kind == "checkpoint record" and link.status == "ok" and "/embedded_seed2/models/" in link.path
               for link in links)
    record = tmp_path / "reference" / "embedded_seed2" / "results" / "embedded_seed2" / "pruning" / "cls_in21k.csv"
    record.write_text(record.read_text().replace("cls_in21k", "cls_in21k ", 1))
    links, _ = audit(spread)
    assert verdict(links)[0] == 1 and any(link.status == "changed" and link.path == str(record) for link in links)
