"""``spot publish``: a finished run's tables, figures and the small files behind them become the published reference.

The workflow writes ``results/<preset>/`` and ``paper_figures/<preset>/`` — never committed, so that a fresh clone's
``snakemake`` runs every job. What a reader needs to judge and audit the published numbers without running anything
is copied, with the same relative layout, into ``reference/<preset>/`` (outside every path the workflow writes):

- ``paper_figures/<preset>/``: every table (CSV, Markdown, LaTeX), figure (PDF, PNG) and their ``.provenance.json``;
- ``results/<preset>/``: every tidy result table (CSV) with its JSON sidecar, the checkpoint records
  (``models/*.json``, ``checkpoints/*.json``: recipe, parent sha256, data manifest, history — not the weights), the
  dataset manifest (not the split files) and Snakemake's benchmark files (time and memory per job);
- ``PUBLISHED.json``: the preset, the commit every file was produced from, the CPU, when and by which command it
  was published, and the sha256 of every copied file.

Publishing refuses a run that is incomplete (a table or figure of the registry missing), produced from a tree with
uncommitted changes (``git_dirty`` in any provenance) or from several commits of which one is unknown: the reference
must name the clean commits that made it. ``spot audit reference/<preset>/paper_figures/<preset>/table5.csv`` then
walks a published number back to its checkpoint records and data manifest (weights and split files are not
published: audit checks that the records' own sha256 are the ones the results were computed from).
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path

from ..experiments.protocol import RESULT_KINDS
from ..provenance import atomic_write_json, code_version, sha256_file
from .. import paper
from ..paper.registry import ARTIFACTS

__all__ = ["REFERENCE_DIR", "MARKER", "published_files", "publish", "configure_parser", "run_from_args"]

REFERENCE_DIR = "reference"
MARKER = "PUBLISHED.json"  # marks a published root: audit resolves the recorded paths against its folder
# what is published of results/<preset>/: (folder, glob); weights, data splits, logs and notebooks are not
_RESULT_GLOBS = (("", "*.csv"), ("", "*.json"), ("*", "*.csv"), ("*", "*.json"), ("benchmarks", "*.tsv"))
_FIGURE_SUFFIXES = (".csv", ".md", ".tex", ".pdf", ".png", ".json")
_SKIPPED_DIRS = ("logs", "state")


def published_files(root: Path, preset: str) -> list[Path]:
    """The files of a run under ``root`` that the reference holds, as paths relative to ``root``."""
    root = Path(root)
    results, figures = root / "results" / preset, root / "paper_figures" / preset
    files = set()
    for folder, pattern in _RESULT_GLOBS:
        base = results.glob(folder) if folder else [results]
        for d in base:
            if d.is_dir() and d.name not in _SKIPPED_DIRS:
                files.update(p for p in d.glob(pattern) if p.is_file())
    files.update(p for p in figures.glob("*") if p.is_file() and p.suffix in _FIGURE_SUFFIXES)
    return sorted(p.relative_to(root) for p in files)


def expected_outputs(results: Path) -> list[str]:
    """The table and figure files a finished run of ``results`` has: every registered artifact whose (non-optional)
    kinds of result the run measured — as the workflow's targets (a preset without token pruning has no pruning
    tables)."""

    measured = {name for name, kind in RESULT_KINDS.items() if next(Path(results).glob(kind.pattern), None)}
    return [f"{n}.csv" if a.kind == "table" else f"{n}.pdf" for n, a in ARTIFACTS.items()
            if set(a.reads) - set(a.optional) <= measured]


def _provenance_blocks(root: Path, files: list[Path]):
    """(path, provenance block) of every JSON among ``files`` that holds one (result sidecars, checkpoint records,
    tables' and figures' provenance)."""
    for rel in files:
        if rel.suffix != ".json":
            continue
        try:
            meta = json.loads((root / rel).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("provenance"), dict):
            yield rel, meta["provenance"]


def check_publishable(root: Path, preset: str, files: list[Path], expected: list[str]) -> dict:
    """``{"commits": [...], "cpus": [...]}`` of the run, or a ValueError naming what keeps it from being published:
    a missing table or figure, or a file produced from a tree with local changes or an unknown commit."""
    figures = Path("paper_figures") / preset
    missing = [name for name in expected if figures / name not in files]
    if missing:
        raise ValueError(f"the run under {root} is incomplete: {', '.join(missing[:5])}"
                         f"{' …' if len(missing) > 5 else ''} missing; finish it first (snakemake --cores 2 "
                         f"{'--configfile …' if preset != 'embedded' else ''}--rerun-incomplete)")
    commits, cpus, dirty = set(), set(), []
    for rel, prov in _provenance_blocks(root, files):
        code = prov.get("code") or {}
        if code.get("git_dirty") is not False or not code.get("git_commit"):
            dirty.append(str(rel))
        else:
            commits.add(code["git_commit"])
        if (prov.get("device") or {}).get("cpu"):
            cpus.add(prov["device"]["cpu"])
    if dirty:
        raise ValueError(f"{len(dirty)} file(s) were produced from a tree with uncommitted changes or no git commit "
                         f"(e.g. {dirty[0]}): a reference names the clean commits that made it — commit, then re-run "
                         f"those jobs (snakemake --forcerun <rule>) before publishing")
    return {"commits": sorted(commits), "cpus": sorted(cpus)}


def publish(preset: str, root=".", to=None, *, expected: list[str] | None = None) -> Path:
    """Copy the run of ``preset`` under ``root`` into ``to`` (default ``root/reference/<preset>``), replacing what
    was there; returns the marker file. ``expected``: the table/figure files the run must have (default: every
    artifact of spot's registry)."""
    root = Path(root)
    to = Path(to) if to is not None else root / REFERENCE_DIR / preset
    if not (root / "results" / preset).is_dir():
        raise ValueError(f"no run of preset {preset!r} under {root}: results/{preset}/ is missing (run the workflow "
                         f"first, or name the preset with --preset)")
    if expected is None:
        expected = expected_outputs(root / "results" / preset)
    files = published_files(root, preset)
    run = check_publishable(root, preset, files, expected)
    staging = to.with_name(f".{to.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    for rel in files:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, staging / rel)
    marker = {"preset": preset, **run, "published": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "by": {"command": f"spot publish --preset {preset}", "code": code_version()},
              "files": {str(rel): sha256_file(root / rel) for rel in files}}
    atomic_write_json(staging / MARKER, marker)
    if to.exists():  # the old reference goes only once the new one is complete
        shutil.rmtree(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(to)
    return to / MARKER


def configure_parser(parser):
    parser.add_argument("--preset", default="embedded", help="the preset whose run to publish (default: embedded)")
    parser.add_argument("--root", default=".", help="where the run's results/ and paper_figures/ are (default: .)")
    parser.add_argument("--to", default=None, help="the reference folder (default: ROOT/reference/PRESET)")
    return parser


def run_from_args(args) -> int:
    marker = publish(args.preset, args.root, args.to)
    meta = json.loads(marker.read_text())
    print(f"published {len(meta['files'])} files of preset {meta['preset']} (commit(s) {', '.join(meta['commits'])}) "
          f"to {marker.parent}; commit it: git add {marker.parent}")
    return 0
