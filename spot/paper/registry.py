"""The registry of the paper's tables and figures: one entry per artifact, declared by the function that builds it.

    @table("table9", reads=("evaluation",), caption="Table 9: …")
    def table9(inputs, config): -> pandas.DataFrame

    @figure("figure6", reads=("throughput", "evaluation"), caption="Figure 6: …")
    def figure6(inputs, config, data): -> matplotlib Figure

``reads`` names the kinds of result the builder reads (:data:`RESULT_KINDS`); the workflow maps each kind to its
files, so the workflow's targets, each job's inputs, the report's captions and the notebooks' dispatch all come from
here — adding a table is one function and one caption. ``inputs`` is ``{kind: [paths]}``. Importable without torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..experiments.protocol import RESULT_KINDS  # what a builder may read, and where a run keeps it

__all__ = ["Artifact", "ARTIFACTS", "RESULT_KINDS", "table", "figure", "artifact"]

@dataclass(frozen=True)
class Artifact:
    name: str  # the file stem: table5, figure5b
    kind: str  # table | figure
    reads: tuple  # kinds of RESULT_KINDS
    caption: str  # what it shows (the report's caption)
    build: Callable
    optional: tuple = ()  # kinds of ``reads`` it does without (the workflow builds it when only these are missing)


ARTIFACTS: dict[str, Artifact] = {}


def _register(kind: str, name: str, reads, caption: str, optional=()):
    unknown = sorted(set(reads) - set(RESULT_KINDS))
    if unknown:
        raise ValueError(f"{name}: unknown result kind(s) {unknown}; accepted: {', '.join(RESULT_KINDS)}")

    def decorate(build):
        if name in ARTIFACTS:
            raise ValueError(f"{name} is registered twice ({ARTIFACTS[name].build.__name__} and {build.__name__})")
        ARTIFACTS[name] = Artifact(name, kind, tuple(reads), " ".join(caption.split()), build, tuple(optional))
        return build

    return decorate


def table(name: str, *, reads, caption: str, optional=()):
    """Register a table builder ``build(inputs, config) -> DataFrame`` under ``name``; ``optional``: the kinds of
    ``reads`` it can do without."""
    return _register("table", name, reads, caption, optional)


def figure(name: str, *, reads, caption: str):
    """Register a figure builder ``build(inputs, config, data) -> Figure`` under ``name``."""
    return _register("figure", name, reads, caption)


def artifact(name) -> Artifact:
    """The registered artifact ``name`` (``table5``; a bare number or ``5b`` is not enough: tables and figures share
    numbers)."""
    if name not in ARTIFACTS:
        raise ValueError(f"no table or figure named {name!r}; registered: {', '.join(ARTIFACTS)}")
    return ARTIFACTS[name]
