"""The experiment protocol: what an experiment declares, the registry of them, and the one runner behind every
``spot <experiment>`` command.

An experiment is one function registered with its command, the kind of result it writes and its columns::

    @experiment("evaluate", kind="evaluation", columns=COLUMNS, arguments=model_arguments("evaluation"),
                help="Acc@1 and kNN per model × prior × token budget", example="spot evaluate --config …")
    def run(args, config) -> Outcome:
        ...                                 # read the typed settings from ``config``, measure
        return Outcome(rows, settings={...}, inputs=input_checksums(...), seed=..., device=...)

The runner (:func:`run_command`) does the rest for every experiment alike: the shared arguments (``--config``,
``--out``, ``--device``, ``--threads``), torch threads, the merged config, the check that every row has the declared
columns in order, the atomic CSV + provenance sidecar (:func:`spot.results.write_table`) and the closing line. The
result kinds (:data:`RESULT_KINDS`) say where a run keeps each kind of result; the paper registry, ``spot publish``
and the workflow's rules read their paths from here. This module imports neither torch nor the experiments: the
workflow reads :data:`RESULT_KINDS` while it builds the DAG; :func:`load_experiments` imports the experiment modules
(which register themselves) when a command needs them.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import add_config_arguments, config_from_args, config_layers, settings_from_dict
from ..results import write_table

__all__ = ["ResultKind", "RESULT_KINDS", "CORE_COLUMNS", "Outcome", "Experiment", "EXPERIMENTS", "experiment", "experiment_settings",
           "model_arguments", "load_experiments", "shared_arguments", "run_command", "result_path"]


@dataclass(frozen=True)
class ResultKind:
    """A kind of result a table or figure may read. ``path``: where a run keeps one file of it, relative to
    ``results/<preset>/``, ``{job}`` standing for the job (a backbone; none for a single file); ``glob``: how to find
    them all (default: ``path`` with ``{job}`` as ``*``)."""
    name: str
    description: str
    path: str | None = None
    glob: str | None = None

    @property
    def pattern(self) -> str:
        return self.glob or (self.path or "").replace("{job}", "*")


RESULT_KINDS: dict[str, ResultKind] = {k.name: k for k in (
    ResultKind("evaluation", "spot evaluate tables, one per backbone (Acc@1 and kNN per model, method, placement, "
                             "budget)", "evaluation/{job}.csv"),
    ResultKind("oracle", "spot oracle tables, one per backbone (SPoT-ON: Tables 1, 2, 3, 5, 6)", "oracle/{job}.csv"),
    ResultKind("trajectories", "the oracle's Figure 4 trajectories (.trajectories.npz), one per backbone",
               "oracle/{job}.trajectories.npz", glob="oracle/*.npz"),
    ResultKind("prior_selection", "spot evaluate tables of prior_selection's candidates on its split, one per backbone",
               "prior_selection/{job}.csv"),
    ResultKind("transfer", "the spot transfer table (Table 4)", "transfer.csv"),
    ResultKind("throughput", "the spot throughput table (images/s and FLOPs per model, method and budget)",
               "throughput/{job}.csv"),
    ResultKind("pruning", "spot pruning tables, one per backbone (pruned models over keep ratios, ToMe, and "
                          "sampling at equal cost)", "pruning/{job}.csv"),
    ResultKind("examples", "spot examples tables, one per backbone (the positions every placement gives on example "
                           "images: Figures 1–3)", "examples/{job}.csv"),
    ResultKind("learned_placement", "spot learned_placement tables, one per backbone (the learned placement, its "
                                    "controls, the relevance placement and every prior at equal total GFLOPs)",
               "learned_placement/{job}.csv"),
    ResultKind("learned_positions", "the learned placement's positions on the first test image of every class "
                                    "(.positions.npz beside its table), one per backbone",
               "learned_placement/{job}.positions.npz", glob="learned_placement/*.npz"),
    ResultKind("records", "the records (.json) of the SPoT models, holding the recipes they were trained with",
               glob="models/*_spot[0-9]*.json"),
    ResultKind("data", "the prepared dataset's manifest (figures draw its images)", glob="data/manifest.json"),
)}

# the columns every result table has, in this order among its own (tables and findings select on them)
CORE_COLUMNS = ("experiment", "variant", "method", "placement", "budget", "metric", "value")


def result_path(kind: str, results: str, job: str = "{backbone}") -> str:
    """Where a run under ``results`` keeps the ``kind`` result of ``job`` (default: the workflow's wildcard)."""
    path = RESULT_KINDS[kind].path
    if path is None:
        raise ValueError(f"result kind {kind!r} has no single path (it is found by {RESULT_KINDS[kind].pattern})")
    return f"{results}/{path.format(job=job)}"


@dataclass
class Outcome:
    """What an experiment's run returns: its rows and what their provenance records."""
    rows: list[dict]
    settings: dict  # the typed settings the rows depend on, as plain data (the provenance's config)
    inputs: dict  # {name: {path, sha256}} of what it read (spot.results.input_checksums)
    seed: Any = None
    device: Any = None
    extra: dict = field(default_factory=dict)  # more of the sidecar (subsets, normalisation, files written beside)
    summary: str = ""  # said after the row count on the closing line


@dataclass(frozen=True)
class Experiment:
    name: str  # the command: spot <name>
    kind: str  # the kind of result it writes (RESULT_KINDS)
    columns: tuple  # the columns every row has, in this order (a row may add its own between them)
    run: Callable  # run(args, config) -> Outcome
    arguments: Callable  # adds the command's own arguments to its parser
    help: str
    example: str


EXPERIMENTS: dict[str, Experiment] = {}
_MODULES = ("spot.experiments.evaluate", "spot.experiments.oracle.experiment", "spot.experiments.pruning",
            "spot.experiments.throughput", "spot.experiments.examples",
            "spot.experiments.learned_placement")  # as timm's models/


def experiment(name: str, *, kind: str, columns: tuple, arguments: Callable, help: str, example: str):
    """Register ``run(args, config) -> Outcome`` as the experiment ``spot <name>``."""
    if kind not in RESULT_KINDS or RESULT_KINDS[kind].path is None:
        raise ValueError(f"{name}: result kind {kind!r} is not one an experiment writes; accepted: "
                         f"{', '.join(k for k, v in RESULT_KINDS.items() if v.path)}")
    if [c for c in columns if c in CORE_COLUMNS] != list(CORE_COLUMNS):
        raise ValueError(f"{name}: its columns must hold {', '.join(CORE_COLUMNS)} in this order, got {columns}")

    def register(run):
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = Experiment(name, kind, tuple(columns), run, arguments, " ".join(help.split()), example)
        return run

    return register


def model_arguments(section: str, *, variants: bool = True, models: str | None = None) -> Callable:
    """The arguments of an experiment on trained models: the models, the data and a subset (``--limit``).

    ``variants``: the models are variants of one backbone (``--backbone NAME --model VARIANT=PATH``: parent, spot,
    grid_control …), else each model is a backbone of its own (``--model BACKBONE=PATH``: transfer). ``models``:
    what the experiment makes of each variant, said in ``--model``'s help."""
    def add(p) -> None:
        if variants:
            p.add_argument("--backbone", default="model",
                           help="the backbone the models belong to, the `backbone` column of the rows (e.g. cls_in1k)")
            p.add_argument("--model", required=True, action="append", metavar="VARIANT=PATH",
                           help=models or "a checkpoint (its .json record beside it) and its variant, the `variant` "
                                          "column of the rows (parent, spot, grid_control, …); repeatable")
        else:
            p.add_argument("--model", required=True, action="append", metavar="BACKBONE=PATH",
                           help="a checkpoint (its .json record beside it) and its backbone's name; repeatable")
        p.add_argument("--data", required=True, help="dataset folder (built by `spot data fmnist|imagenet`)")
        p.add_argument("--limit", type=int, default=None, help=f"a seeded subset of N images, stratified by class "
                                                                f"(overrides {section}.limit)")
    return add


def load_experiments() -> dict[str, Experiment]:
    """Import the experiment modules (each registers its experiments) and return the registry."""
    for module in _MODULES:
        importlib.import_module(module)
    return EXPERIMENTS


def shared_arguments(p) -> None:
    """The arguments every experiment command has beyond its own: the config, the output, the device, threads."""
    add_config_arguments(p, what="its sections")
    p.add_argument("--out", required=True, help="result table (.csv); the provenance goes to the .json beside it")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _check_columns(exp: Experiment, rows: list[dict]) -> None:
    for row in rows:
        if [c for c in row if c in exp.columns] != list(exp.columns):
            raise RuntimeError(f"spot {exp.name}: a row's columns {list(row)} do not hold the declared "
                               f"{list(exp.columns)} in this order (a bug in the experiment)")


def run_command(args) -> int:
    """``spot <experiment> …``: run the experiment, check its rows, write its table and provenance, say so."""
    import torch

    exp = EXPERIMENTS[args.experiment]
    started = time.time()
    if not str(args.out).endswith(".csv"):
        raise ValueError(f"--out must be a .csv file (its provenance goes to the .json beside it), got {args.out}")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    outcome = exp.run(args, config)
    _check_columns(exp, outcome.rows)
    out = write_table(outcome.rows, args.out, config={**outcome.settings, "config_files": config_layers(args)},
                      inputs=outcome.inputs, seed=outcome.seed, device=outcome.device, started=started,
                      extra=outcome.extra)
    print(f"spot {exp.name}: {len(outcome.rows)} rows{outcome.summary} in {time.time() - started:.0f} s → {out}")
    return 0


def experiment_settings(args, config: dict, settings_cls, section: str):
    """What every experiment on trained models sets up: the typed ``section`` settings of ``config`` (``--limit``
    overriding ``limit``; validated), the saliency settings and the device. Returns ``(settings, saliency, device)``."""
    import torch  # the workflow reads this module without torch

    from .saliency import SaliencySettings  # imports torch: the workflow reads this module

    settings = settings_from_dict(settings_cls, config.get(section), section)
    if getattr(args, "limit", None) is not None:
        settings.limit = args.limit
    settings.validate()
    saliency = settings_from_dict(SaliencySettings, config.get("saliency"), "saliency")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return settings, saliency, device
