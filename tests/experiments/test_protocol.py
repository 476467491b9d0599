"""The experiment protocol (spot.experiments.protocol): the registry, the generic runner, and adding an experiment as one unit."""
import json
from pathlib import Path

import pandas as pd
import pytest

from spot.experiments import protocol as protocol
from spot.app.cli import build_parser
from spot.experiments.protocol import CORE_COLUMNS, RESULT_KINDS, Outcome, load_experiments, result_path


def test_every_experiment_writes_a_kind_of_result_and_has_a_command():
    experiments = load_experiments()
    assert set(experiments) == {"evaluate", "oracle", "transfer", "pruning", "throughput", "examples",
                                "learned_placement"}
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, exp in experiments.items():
        assert RESULT_KINDS[exp.kind].path and name in commands
        assert [c for c in exp.columns if c in CORE_COLUMNS] == list(CORE_COLUMNS)
        assert exp.example.startswith(f"spot {name} ")


def test_result_paths_come_from_the_kinds():
    assert result_path("evaluation", "results/embedded", "cls_in1k") == "results/embedded/evaluation/cls_in1k.csv"
    assert result_path("transfer", "results/embedded") == "results/embedded/transfer.csv"
    assert RESULT_KINDS["trajectories"].pattern == "oracle/*.npz" and RESULT_KINDS["pruning"].pattern == "pruning/*.csv"
    with pytest.raises(ValueError, match="no single path"):
        result_path("records", "results/embedded")


def test_a_registration_that_breaks_the_protocol_is_refused():
    with pytest.raises(ValueError, match="not one an experiment writes"):
        protocol.experiment("x", kind="records", columns=CORE_COLUMNS, arguments=lambda p: None, help="h", example="e")
    with pytest.raises(ValueError, match="in this order"):
        protocol.experiment("x", kind="evaluation", columns=("experiment", "value", "metric"),
                            arguments=lambda p: None, help="h", example="e")
    with pytest.raises(ValueError, match="registered twice"):
        protocol.experiment("evaluate", kind="evaluation", columns=CORE_COLUMNS, arguments=lambda p: None,
                            help="h", example="e")(lambda args, config: None)


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry as it is, in a copy this test may add to."""
    monkeypatch.setattr(protocol, "EXPERIMENTS", dict(load_experiments()))
    return protocol.EXPERIMENTS


def _register_budget_count(columns=CORE_COLUMNS):
    """The docs' worked example: an experiment that counts, per budget of the `evaluation:` section, the tokens a
    model would read — one unit, registered, and it is a `spot` command."""
    def arguments(p):
        p.add_argument("--backbone", default="model")

    @protocol.experiment("budget_count", kind="evaluation", columns=columns, arguments=arguments,
                         help="tokens read per budget", example="spot budget_count --config config.yaml --out x.csv")
    def run(args, config):
        budgets = config["evaluation"]["budgets"]
        rows = [dict(zip(columns, ("budget_count", "spot", "spot", "isotropic", m, "tokens", float(m))))
                for m in budgets]
        return Outcome(rows, settings={"budgets": budgets}, inputs={}, seed=0, device="cpu",
                       summary=f" for {len(budgets)} budget(s)")

    return run


def test_adding_an_experiment_is_one_registered_function(scratch_registry, tmp_path, capsys):
    _register_budget_count()
    out = tmp_path / "counts.csv"
    args = build_parser().parse_args(["budget_count", "--config", "config.yaml", "--out", str(out)])
    assert args.func(args) == 0
    table = pd.read_csv(out)
    budgets = table.budget.tolist()
    assert budgets and budgets == table.value.astype(int).tolist() and tuple(table.columns) == CORE_COLUMNS
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["rows"] == len(budgets) and meta["provenance"]["config"]["budgets"] == budgets
    assert meta["provenance"]["config"]["config_files"]  # the runner adds which presets were read
    assert f"spot budget_count: {len(budgets)} rows for {len(budgets)} budget(s)" in capsys.readouterr().out


def test_the_runner_refuses_rows_without_the_declared_columns(scratch_registry, tmp_path):
    run = _register_budget_count()
    scratch_registry["budget_count"] = protocol.Experiment(
        "budget_count", "evaluation", (*CORE_COLUMNS, "n_images"), run, lambda p: None, "h", "e")
    args = build_parser().parse_args(["budget_count", "--config", "config.yaml", "--out", str(tmp_path / "c.csv")])
    with pytest.raises(RuntimeError, match="do not hold the declared"):
        args.func(args)
    assert not (tmp_path / "c.csv").exists()  # nothing half-written
    with pytest.raises(ValueError, match="must be a .csv"):
        args.out = str(tmp_path / "c.txt")
        args.func(args)


def test_publish_and_the_workflow_read_the_same_paths():
    """`spot publish` finds a run's results by the kinds' patterns; the workflow's rules write to the kinds' paths."""
    rules = "\n".join(p.read_text() for p in Path("workflow/rules").glob("*.smk"))
    for name, kind in RESULT_KINDS.items():
        if kind.path:
            assert f'result("{name}"' in rules, name
    assert "evaluation/{m}.csv" not in rules and "_KIND_GLOBS" not in Path("spot/reproduce/publish.py").read_text()
