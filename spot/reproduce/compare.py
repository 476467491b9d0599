"""``spot compare RUN REFERENCE``: did a run reproduce a reference? Importable without torch.

RUN and REFERENCE are roots holding ``results/<preset>/`` (the experiments' tidy records, each ``X.csv`` with its
``X.json`` provenance sidecar) and ``paper_figures/<preset>/`` (the tables built from them): a checkout where the
workflow ran (``.``) or a published reference (``reference/embedded``, the same layout inside).

**Records.** Every result CSV present on both sides is compared row by row, except ``throughput/``: timings vary by
machine. Rows are matched on their *key* columns — every column but the measured ones (:func:`is_measured`):
:data:`MEASURED` (the value and what describes its uncertainty) and any timing-like column (a word of its name in
:data:`TIMING_WORDS`: ``wall_time_s``, ``ms_per_batch`` …). Key values are compared as numbers where they parse as
numbers (``4`` and ``4.0`` name the same budget), else as text; rows whose keys repeat are paired in order. Per
matched row: ``difference`` = run − reference of ``value``; ``identical`` when every measured, non-timing column is
bit-identical; else a half-width ``tolerance`` and the verdict ``within`` (|difference| ≤ tolerance) or ``beyond``.
The tolerance (the report names which one each row used):

* ``paired outcomes`` — both rows carry per-image ``outcomes`` on the same ``n_images``: the half-width of the 95 %
  interval of the paired difference of the two runs' per-image outcomes (:func:`spot.stats.paired_difference`):
  images flipping both ways cancel; a run that changed many images the same way does not reproduce;
* ``unpaired CIs`` — else, both rows carry ``ci_low`` / ``ci_high``: :func:`spot.stats.unpaired_difference`;
* ``exact`` — else (GFLOPs, displacements, deltas): :data:`RELATIVE_EXACT` × the larger magnitude;
* ``+ seed spread`` — with ``--seed-spread``, the row's training-seed standard deviation ``seed_sd`` adds
  ``Z·√2·seed_sd`` in quadrature (the 95 % half-width of the difference of two single-seed runs).

**Seed-spread CSV** (``--seed-spread``): one row per measurement with ``seed_sd`` (the standard deviation over
training seeds, ddof = 1, in the units of ``value``), an optional ``file`` column (the record file it belongs to,
relative to ``results/<preset>/``: ``evaluation/cls_in1k.csv``; without it a row may apply to any file) and any of
the records' key columns. A spread row applies to a record when each of its key cells equals the record's (a column
the record lacks counts as empty); columns the spread leaves out are not constrained (leave out the training-seed
column: the spread is over it). A preset that trains every model with several seeds writes it by grouping its
per-seed rows by every key column but the training seed. Two spread rows applying to one record are an error. A
row with a ``measured_on`` cell is a stand-in: another backbone's spread applied to this one's records (``spot
spread --stand-in-for``); the rows it widens say so (``+ seed spread of <backbone>``).

**Findings.** When both sides have ``paper_figures/<preset>/findings.csv``, every ``Finding`` × ``Scope`` whose
``Verdict`` differs is listed first in the report, flagged. **Tables:** each table CSV on both sides is byte-identical
or not; if not, the number of cells whose numbers differ and the largest absolute difference (informational: the
records carry the tolerances).

**Verdict** (:meth:`Comparison.verdict`): REPRODUCED when some row was compared, none is beyond its tolerance and
no finding flipped; REPRODUCED WITHIN NOISE when rows are beyond or findings flipped no more than chance explains
(:class:`Noise`: a 95 % tolerance puts 5 % of a reproduction's rows beyond it; none beyond the family-wise tolerance,
no deterministic row differing, no finding reversed between holds and contradicted); else NOT REPRODUCED. Exit code
(:meth:`Comparison.exit_code`): 1 for NOT REPRODUCED, else 0; 2 for bad arguments (a root without
``results/<preset>/``).
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from ..findings.registry import NOT_MEASURED
from ..stats import Z, Interval, decode_outcomes, paired_difference, unpaired_difference
from ..paper.published import published_cells, tolerance
from ..provenance import atomic_write_text
from html import escape

__all__ = ["MEASURED", "TIMING_WORDS", "NOT_COMPARED", "RELATIVE_EXACT", "MAX_ROWS", "is_measured", "compare",
           "compare_records", "compare_findings", "scopes_differ", "compare_tables", "Comparison", "render_markdown",
           "render_html", "configure_parser", "run_from_args", "Noise", "judge_noise", "familywise_ratio"]

# The measured columns: not keys. ``value`` is compared; the others describe its uncertainty (n_correct, the Wilson
# interval, the per-image outcomes) and must be bit-identical for a row to be `identical`.
MEASURED = ("value", "n_correct", "ci_low", "ci_high", "outcomes")
# A column with one of these words (split at "_") is timing-like: neither a key nor compared (wall_time_s, ms_per_batch,
# images_per_s, elapsed_seconds …).
TIMING_WORDS = frozenset({"time", "times", "timing", "wall", "elapsed", "duration", "latency", "seconds", "sec",
                          "s", "ms"})
NOT_COMPARED = {"throughput": "not compared: timings vary by machine"}  # first folder of a record file → why
RELATIVE_EXACT = 1e-9  # the relative tolerance of rows without an interval (GFLOPs, displacements, deltas)
MAX_ROWS = 50  # rows listed per section of the report (--max-rows)
SEED_SD, FILE = "seed_sd", "file"  # the seed-spread CSV's columns besides the keys
SPREAD_INFO = ("seed_mean", "seed_min", "seed_max", "n_runs")  # written by spot spread for a reader; not keys
MEASURED_ON = "measured_on"  # a stand-in spread row (spot spread --stand-in-for): the backbone its seeds measured
FINDING_KEYS, VERDICT = ("Finding", "Scope"), "Verdict"
OVERALL = "all"  # the Scope of a finding's overall verdict (spot.findings.measure.overall)
OCCURRENCE = "_occurrence"  # pairs rows whose keys repeat, in order
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
IDENTICAL, WITHIN, BEYOND = "identical", "within", "beyond"
ALPHA = 0.05  # each row's tolerance is the 95 % half-width (Z): a reproduction puts ALPHA of its sampled rows beyond
REVERSED = frozenset({"holds", "contradicted"})  # a flip between these: the verdict reversed beyond both sides' noise
REPRODUCED, WITHIN_NOISE, NOT_REPRODUCED = "REPRODUCED", "REPRODUCED WITHIN NOISE", "NOT REPRODUCED"


def is_measured(column: str) -> bool:
    """Whether ``column`` holds a measurement (not a key): :data:`MEASURED` or timing-like."""
    return column in MEASURED or bool(TIMING_WORDS & set(column.lower().split("_")))


# ---------------------------------------------------------------------------------------------------- reading

def results_dir(root, preset: str, side: str) -> Path:
    """``root/results/preset``; a one-line error naming the problem and the fix when it is not there."""
    path = Path(root) / "results" / preset
    if not path.is_dir():
        others = sorted(p.name for p in (Path(root) / "results").glob("*") if p.is_dir())
        hint = f" (its results/ holds: {', '.join(others)}; pick one with --preset NAME)" if others else ""
        raise FileNotFoundError(f"{side} {root}: no results/{preset}/ in it{hint} — give the root of a run (the "
                                f"checkout the workflow ran in, e.g. `.`) or of a reference (e.g. reference/{preset})")
    return path


def _read_csv(path) -> pd.DataFrame:
    """Every cell as text, missing cells as "" (numbers are parsed where they are used)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _norm(text) -> str:
    """A key cell as a canonical string: numbers by their float value, else the stripped text."""
    try:
        return repr(float(text))
    except (TypeError, ValueError):
        return str(text).strip()


def _parse(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _number(text) -> float:
    """A cell as a float, nan where it is empty or text."""
    x = _parse(text)
    return float("nan") if x is None else x


def _count(text) -> int:
    """An integer cell (n_images), 0 where it is missing."""
    x = _number(text)
    return int(x) if math.isfinite(x) else 0


def side_provenance(results: Path) -> dict:
    """The commits and CPUs named by the sidecars under ``results``, each with its number of files."""
    commits, cpus = Counter(), Counter()
    for sidecar in sorted(results.rglob("*.json")):
        prov = json.loads(sidecar.read_text()).get("provenance") or {}
        code, device = prov.get("code") or {}, prov.get("device") or {}
        commit = str(code.get("git_commit") or "?")[:12] + ("+dirty" if code.get("git_dirty") else "")
        commits[commit] += 1
        cpus[" ".join(str(device[k]) for k in ("cpu", "isa") if device.get(k)) or str(device.get("name", "?"))] += 1
    return {"commit": _tally(commits), "cpu": _tally(cpus)}


def _tally(counts: Counter) -> str:
    return ", ".join(f"{k} ({n} files)" for k, n in counts.most_common()) or "—"


# ---------------------------------------------------------------------------------------------------- records

def _keyed(frame: pd.DataFrame, keys: list) -> pd.DataFrame:
    """The normalised key cells of ``frame`` plus the occurrence of each key (repeated keys pair in order)."""
    out = frame[keys].apply(lambda column: column.map(_norm)) if keys else pd.DataFrame(index=frame.index)
    out[OCCURRENCE] = out.groupby(keys, sort=False).cumcount() if keys else np.arange(len(frame))
    return out


def _labels(run_keys: pd.DataFrame, ref_keys: pd.DataFrame, raw: pd.DataFrame, keys: list) -> pd.Series:
    """A short label per row: the key columns that vary within the file (all non-empty ones if none vary)."""
    if not keys:
        return pd.Series("", index=raw.index)
    both = pd.concat([run_keys, ref_keys])
    varying = [k for k in keys if both[k].nunique() > 1] or keys
    return raw[varying].apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items() if v != ""), axis=1)


def seed_sd(spread: pd.DataFrame | None, rel: str, keyed: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(seed_sd, measured_on)`` applying to each row of ``keyed`` (normalised keys of file ``rel``): nan where no
    spread row does; ``measured_on`` the stand-in's backbone, "" for a row's own spread."""
    none = (np.full(len(keyed), np.nan), np.full(len(keyed), "", dtype=object))
    if spread is None:
        return none
    sub = spread[spread[FILE] == rel] if FILE in spread.columns else spread
    if MEASURED_ON not in sub.columns:
        sub = sub.assign(**{MEASURED_ON: ""})
    cols = [c for c in sub.columns if c not in (FILE, SEED_SD, MEASURED_ON)]
    if sub.empty:
        return none
    if (sub.duplicated(cols).any() if cols else len(sub) > 1):
        raise ValueError(f"--seed-spread: several rows apply to the same records of {rel}: "
                         f"{sub[sub.duplicated(cols, keep=False)].head(2).to_dict('records')}")
    if not cols:
        return (np.full(len(keyed), _number(sub[SEED_SD].iloc[0])),
                np.full(len(keyed), str(sub[MEASURED_ON].iloc[0]), dtype=object))
    rows = keyed.reindex(columns=cols, fill_value="")  # a column the records lack counts as empty
    merged = rows.reset_index(drop=True).merge(sub[cols + [SEED_SD, MEASURED_ON]], on=cols, how="left")
    return merged[SEED_SD].map(_number).to_numpy(), merged[MEASURED_ON].fillna("").astype(str).to_numpy()


def _same(a: str, b: str) -> bool:
    """Bit-identical cells: equal floats (nan equal to nan) or equal text."""
    x, y = _parse(a), _parse(b)
    if x is None or y is None:
        return a == b
    return x == y or (math.isnan(x) and math.isnan(y))


def image_tolerance(run: dict, ref: dict) -> tuple[str, float]:
    """``(kind, half-width)`` from the images: paired outcomes, else unpaired CIs, else exact."""
    a, b = _number(run.get("value")), _number(ref.get("value"))
    n, m = _count(run.get("n_images")), _count(ref.get("n_images"))
    if run.get("outcomes") and ref.get("outcomes") and n == m and n > 0:
        d = paired_difference(decode_outcomes(run["outcomes"], n), decode_outcomes(ref["outcomes"], n))
        return "paired outcomes", (d.high - d.low) / 2
    ci = [_number(r.get(c)) for r in (run, ref) for c in ("ci_low", "ci_high")]
    if all(math.isfinite(x) for x in ci):
        d = unpaired_difference(Interval(a, ci[0], ci[1], n), Interval(b, ci[2], ci[3], m))
        return "unpaired CIs", (d.high - d.low) / 2
    return "exact", RELATIVE_EXACT * max(abs(a), abs(b))


def compare_row(run: dict, ref: dict, sd: float = float("nan"), measured_on: str = "") -> dict:
    """Difference, identity, tolerance (kind and half-width) and verdict of one matched pair of rows (``sd``: its
    training-seed spread, measured on backbone ``measured_on`` when that is a stand-in)."""
    a, b = _number(run.get("value")), _number(ref.get("value"))
    measured = sorted({c for c in (*run, *ref) if c in MEASURED})
    identical = all(_same(run.get(c, ""), ref.get(c, "")) for c in measured)
    kind, half = image_tolerance(run, ref)
    if not math.isnan(sd):
        of = f" of {measured_on}" if measured_on else ""
        kind, half = f"{kind} + seed spread{of}", math.hypot(half, Z * math.sqrt(2) * sd)
    diff = a - b
    verdict = IDENTICAL if identical else (WITHIN if abs(diff) <= half else BEYOND)
    ratio = 0.0 if identical else (abs(diff) / half if half > 0 else math.inf)
    return {"run": a, "reference": b, "difference": diff, "identical": identical, "tolerance": half,
            "tolerance_used": kind, "verdict": verdict, "ratio": ratio if not math.isnan(ratio) else math.inf}


def compare_records(run_csv, ref_csv, rel: str, spread: pd.DataFrame | None = None):
    """``(rows, unmatched, note)`` of one record file: a row per matched pair (:func:`compare_row`, with ``file`` and
    a ``row`` label), a row per record found on one side only (``file``, ``side``, ``row``), and the key columns
    found on one side only (not matched on)."""
    run, ref = _read_csv(run_csv), _read_csv(ref_csv)
    timed = sum(int(_timing_rows(f).sum()) for f in (run, ref))
    run, ref = (f[~_timing_rows(f)].reset_index(drop=True) for f in (run, ref))
    keys = [c for c in run.columns if c in ref.columns and not is_measured(c)]
    rk, fk = _keyed(run, keys), _keyed(ref, keys)
    on = keys + [OCCURRENCE]
    merged = rk.reset_index().merge(fk.reset_index(), on=on, how="outer", suffixes=("_run", "_ref"), indicator=True)
    labels = _labels(rk, fk, pd.concat([run[keys], ref[keys]], ignore_index=True), keys)
    pair = merged[merged["_merge"] == "both"]
    sds, sources = seed_sd(spread, rel, pair[on])
    rows = [{"file": rel, "row": labels[int(i)],
             **compare_row(run.loc[int(i)].to_dict(), ref.loc[int(j)].to_dict(), sd, source)}
            for i, j, sd, source in zip(pair["index_run"], pair["index_ref"], sds, sources)]
    unmatched = [{"file": rel, "side": side, "row": labels[int(i) + offset]}
                 for side, col, flag, offset in (("run", "index_run", "left_only", 0),
                                                 ("reference", "index_ref", "right_only", len(run)))
                 for i in merged.loc[merged["_merge"] == flag, col]]
    lone = [f"{c} (only in {side})" for side, a, b in (("run", run, ref), ("reference", ref, run))
            for c in a.columns if c not in b.columns and not is_measured(c)]
    note = f"; key columns not matched on: {', '.join(lone)}" if lone else ""
    note += f"; {timed} timing rows not compared (metric images_per_s …: they time the machine)" if timed else ""
    return pd.DataFrame(rows), pd.DataFrame(unmatched, columns=["file", "side", "row"]), note


def _timing_rows(frame: pd.DataFrame) -> pd.Series:
    """The rows whose ``metric`` is timing-like (``images_per_s``): a mixed record file's timings (the learned
    placement's), not compared, as a throughput file is not."""
    if "metric" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["metric"].map(lambda m: bool(TIMING_WORDS & set(str(m).lower().split("_"))))


# ---------------------------------------------------------------------------------------------------- findings

def scopes_differ(tables: list[pd.DataFrame]) -> set:
    """The findings whose scopes are not the same in every findings table: their overall verdicts (scope ``all``)
    are taken over other scopes, so they are not compared."""
    scopes = [t.groupby(FINDING_KEYS[0])[FINDING_KEYS[1]].agg(frozenset) for t in tables]
    names = set().union(*(s.index for s in scopes))
    return {n for n in names if len({s.get(n) for s in scopes}) > 1}


def compare_findings(run_csv: Path, ref_csv: Path) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """``(status, flipped, one_side)``: the findings × scopes whose verdict differs, and those compared on one side
    only: present on one side, "not measured" on one side, or the finding's overall verdict (scope ``all``) taken over
    other scopes on the two sides (a one-backbone run against the default's reference)."""
    missing = [side for side, p in (("run", run_csv), ("reference", ref_csv)) if not p.is_file()]
    if missing:
        return f"not compared: no {run_csv.name} in {' and '.join(missing)}", pd.DataFrame(), pd.DataFrame()
    run, ref = _read_csv(run_csv), _read_csv(ref_csv)
    keys = list(FINDING_KEYS)
    lacking = [f"{side} lacks {c}" for side, f in (("run", run), ("reference", ref)) for c in (*keys, VERDICT)
               if c not in f.columns]
    if lacking:
        return f"not compared: {run_csv.name}: {', '.join(lacking)}", pd.DataFrame(), pd.DataFrame()
    merged = run.merge(ref, on=keys, how="outer", suffixes=(" (run)", " (reference)"), indicator=True)
    merged["_merge"] = merged["_merge"].astype(str).map({"left_only": "run only", "right_only": "reference only",
                                                         "both": "both"})
    verdicts = merged[[f"{VERDICT} (run)", f"{VERDICT} (reference)"]]
    measured = (verdicts != NOT_MEASURED).to_numpy()
    merged.loc[(merged["_merge"] == "both") & ~measured[:, 0] & measured[:, 1], "_merge"] = "measured in reference only"
    merged.loc[(merged["_merge"] == "both") & measured[:, 0] & ~measured[:, 1], "_merge"] = "measured in run only"
    overall = (merged[keys[1]] == OVERALL) & (merged["_merge"] == "both")
    differ = overall & merged[keys[0]].isin(scopes_differ([run, ref]))
    merged.loc[differ, "_merge"] = "over other scopes"  # the finding's overall verdict, over other scope sets
    both = merged[merged["_merge"] == "both"]
    flipped = both[both[f"{VERDICT} (run)"] != both[f"{VERDICT} (reference)"]]
    one_side = merged[merged["_merge"] != "both"].copy()
    cols = keys + [f"{VERDICT} (run)", f"{VERDICT} (reference)"]
    return "compared", flipped[cols].reset_index(drop=True), one_side[keys + ["_merge"]].rename(
        columns={"_merge": "side"}).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------- tables

def _cell_numbers(cell: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(cell.replace("\u2212", "-"))]


def table_difference(run_csv: Path, ref_csv: Path) -> dict:
    """Byte-identical or not; if not, the cells whose numbers (or text) differ and the largest |difference|."""
    if run_csv.read_bytes() == ref_csv.read_bytes():
        return {"status": "byte-identical"}
    a, b = _read_csv(run_csv), _read_csv(ref_csv)
    if list(a.columns) != list(b.columns) or a.shape != b.shape:
        return {"status": f"layout differs: {a.shape[0]}×{a.shape[1]} vs {b.shape[0]}×{b.shape[1]}"}
    numeric, text, largest = 0, 0, 0.0
    for x, y in zip(a.to_numpy().ravel(), b.to_numpy().ravel()):
        if x == y:
            continue
        nx, ny = _cell_numbers(x), _cell_numbers(y)
        if not nx or not ny or nx == ny:  # text, or the same numbers written differently
            text += 1
            continue
        numeric += 1
        if len(nx) == len(ny):
            largest = max([largest, *(abs(p - q) for p, q in zip(nx, ny))])
    return {"status": "differs", "differing numeric cells": numeric, "largest abs difference": largest,
            "differing text cells": text}


def compare_tables(run_dir: Path, ref_dir: Path) -> pd.DataFrame:
    """One row per table CSV of either side's ``paper_figures/<preset>/``."""
    names = sorted({p.name for d in (run_dir, ref_dir) if d.is_dir() for p in d.glob("*.csv")})
    rows = []
    for name in names:
        a, b = run_dir / name, ref_dir / name
        info = table_difference(a, b) if a.is_file() and b.is_file() else \
            {"status": f"only in {'run' if a.is_file() else 'reference'}"}
        rows.append({"table": name, **info})
    return pd.DataFrame(rows, columns=["table", "status", "differing numeric cells", "largest abs difference",
                                       "differing text cells"])


# ---------------------------------------------------------------------------------------------------- comparison

@dataclass
class Comparison:
    run: Path
    reference: Path
    preset: str
    sides: dict  # "run" / "reference" → {"commit", "cpu"}
    rows: pd.DataFrame  # every matched record row
    unmatched: pd.DataFrame  # records on one side only
    files: pd.DataFrame  # per record file: its status
    findings_status: str
    flipped: pd.DataFrame
    findings_one_side: pd.DataFrame
    tables: pd.DataFrame

    def beyond(self) -> pd.DataFrame:
        b = self.rows[self.rows["verdict"] == BEYOND] if len(self.rows) else self.rows
        return b.sort_values("ratio", ascending=False, kind="stable") if len(b) else b

    @cached_property
    def noise(self) -> "Noise":
        return judge_noise(self.rows, self.flipped)

    def verdict(self) -> str:
        """REPRODUCED (every row identical or within, no finding flipped), REPRODUCED WITHIN NOISE (see
        :class:`Noise`) or NOT REPRODUCED."""
        if not len(self.rows):
            return NOT_REPRODUCED
        if not len(self.beyond()) and not len(self.flipped):
            return REPRODUCED
        return WITHIN_NOISE if self.noise.within_noise() else NOT_REPRODUCED

    def exit_code(self) -> int:
        return 1 if self.verdict() == NOT_REPRODUCED else 0


@dataclass(frozen=True)
class Noise:
    """The rows beyond their 95 % tolerance against chance. Each row's tolerance is a 95 % interval, so a run that
    reproduced within the stated noise still puts about ALPHA of its sampled rows beyond it — a few thousand rows give
    a hundred or more. Within noise means: no deterministic row (``exact`` tolerance: FLOPs, token counts) differs, the
    count beyond is at most the 95th percentile of Binomial(tested, ALPHA) (rows sharing a model are correlated: this
    is a screen, not an exact test), no row is beyond the family-wise tolerance (Bonferroni over the tested rows), and
    no finding reversed between holds and contradicted (a flip to or from inconclusive is one side's interval touching
    its threshold: listed, not failed)."""

    tested: int  # matched rows with a sampled tolerance (every tolerance but plain `exact`)
    beyond: int  # of them beyond their 95 % tolerance
    allowed: int  # the 95th percentile of Binomial(tested, ALPHA)
    beyond_familywise: int  # beyond ``familywise`` × their tolerance
    familywise_unspread: int  # of them judged on the images alone (no seed spread applies to them)
    exact_beyond: int  # deterministic rows that differ
    reversed: int  # flipped findings, holds ↔ contradicted

    @property
    def expected(self) -> float:
        """Rows beyond their 95 % tolerance by chance alone if the run reproduced."""
        return ALPHA * self.tested

    @property
    def familywise(self) -> float:
        """|difference| / tolerance above which a row is beyond at ALPHA over all tested rows."""
        return familywise_ratio(self.tested)

    def within_noise(self) -> bool:
        return (not self.exact_beyond and self.beyond <= self.allowed and not self.beyond_familywise
                and not self.reversed)


def familywise_ratio(tested: int) -> float:
    """The factor on a 95 % tolerance that makes it a Bonferroni tolerance over ``tested`` rows."""
    return NormalDist().inv_cdf(1 - ALPHA / (2 * max(tested, 1))) / Z


def reversed_flips(flipped: pd.DataFrame) -> pd.Series:
    """Which flipped findings reversed (holds ↔ contradicted)."""
    if not len(flipped):
        return pd.Series(dtype=bool)
    verdicts = flipped[[f"{VERDICT} (run)", f"{VERDICT} (reference)"]]
    return verdicts.isin(REVERSED).all(axis=1)


def judge_noise(rows: pd.DataFrame, flipped: pd.DataFrame) -> Noise:
    from scipy.stats import binom  # scipy only once rows are judged: `spot` commands import this module lightly

    if not len(rows):
        return Noise(0, 0, 0, 0, 0, 0, int(reversed_flips(flipped).sum()))
    exact = rows["tolerance_used"] == "exact"
    sampled, beyond = rows[~exact], rows["verdict"] == BEYOND
    tested = len(sampled)
    far = sampled[sampled["ratio"] > familywise_ratio(tested)]
    return Noise(tested, int(beyond[~exact].sum()), int(binom.ppf(0.95, tested, ALPHA)), len(far), int((~far["tolerance_used"].str.contains("seed spread")).sum()),
                 int((beyond & exact).sum()), int(reversed_flips(flipped).sum()))


def _record_files(results: Path) -> set:
    return {p.relative_to(results).as_posix() for p in results.rglob("*.csv")}


def read_seed_spread(path) -> pd.DataFrame:
    """The ``--seed-spread`` CSV (see the module's docstring), key cells normalised."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--seed-spread {path}: no such file (a CSV of the key columns, optionally `{FILE}`, "
                                f"and `{SEED_SD}`)")
    frame = _read_csv(path)
    if SEED_SD not in frame.columns:
        raise ValueError(f"--seed-spread {path}: no `{SEED_SD}` column (expected the key columns of the records, "
                         f"optionally `{FILE}`, and `{SEED_SD}`)")
    frame = frame.drop(columns=[c for c in SPREAD_INFO if c in frame.columns])
    return frame.apply(lambda c: c if c.name in (FILE, SEED_SD, MEASURED_ON) else c.map(_norm))


def _file_status(rel: str, run_files: set, ref_files: set) -> str:
    why = NOT_COMPARED.get(rel.split("/")[0])
    if why:
        return why
    if rel not in ref_files or rel not in run_files:
        return f"not compared: only in {'run' if rel in run_files else 'reference'}"
    return "compared"


def compare(run, reference, preset: str = "embedded", seed_spread=None,
            reference_preset: str | None = None) -> Comparison:
    """Compare the records, findings and tables of ``run`` against ``reference`` (roots) for ``preset`` (the
    reference's ``reference_preset`` when that differs: a one-backbone preset against the default's reference)."""
    run, reference, ref_preset = Path(run), Path(reference), reference_preset or preset
    a, b = results_dir(run, preset, "RUN"), results_dir(reference, ref_preset, "REFERENCE")
    spread = read_seed_spread(seed_spread) if seed_spread else None
    fa, fb = _record_files(a), _record_files(b)
    files, rows, unmatched = [], [], []
    for rel in sorted(fa | fb):
        status = _file_status(rel, fa, fb)
        if status == "compared":
            r, u, note = compare_records(a / rel, b / rel, rel, spread)
            status += note
            rows.append(r)
            unmatched.append(u)
        files.append({"file": rel, "status": status})
    figures = [run / "paper_figures" / preset, reference / "paper_figures" / ref_preset]
    status, flipped, one_side = compare_findings(figures[0] / "findings.csv", figures[1] / "findings.csv")
    label = preset if ref_preset == preset else f"{preset} (reference: {ref_preset})"
    return Comparison(run, reference, label, {"run": side_provenance(a), "reference": side_provenance(b)},
                      _concat(rows), _concat(unmatched), pd.DataFrame(files), status, flipped, one_side,
                      compare_tables(*figures))


PAPER = "paper"  # REFERENCE naming the SPoT paper's published numbers (spot.paper.published) instead of a run


def _table_cell(tables: dict, figures: Path, table: str, row_key: dict, column: str) -> float:
    """The number in ``table``'s row matching ``row_key`` (column → cell text) and ``column``; nan where absent."""
    if table not in tables:
        path = figures / f"{table}.csv"
        tables[table] = _read_csv(path) if path.is_file() else None
    frame = tables[table]
    if frame is None or column not in frame.columns:
        return float("nan")
    hit = frame
    for key, value in row_key.items():
        if key not in hit.columns:
            return float("nan")
        hit = hit[hit[key].map(_norm) == _norm(value)]
    return _number(hit[column].iloc[0]) if len(hit) == 1 else float("nan")


def compare_paper(run, preset: str = "paper") -> pd.DataFrame:
    """Every published number of the paper (:func:`spot.paper.published.published_cells`) against the same cell of
    the run's tables: the difference, the paper's tolerance (its ± where it reports one, else the binomial 95 %
    half-width on 50 000 images: :func:`~spot.paper.published.tolerance`) and a verdict (``within``, ``beyond``;
    ``not in run`` where the run's table lacks the cell; ``no counterpart`` where this project has none)."""

    figures = Path(run) / "paper_figures" / preset
    if not figures.is_dir():
        raise ValueError(f"no paper_figures/{preset}/ under {run}: run the paper preset (or name it with --preset)")
    tables, rows = {}, []
    for _, cell in published_cells().iterrows():
        ours = _table_cell(tables, figures, cell["table"], json.loads(cell["row_key"]), cell["column"]) \
            if cell["counterpart"] else float("nan")
        tol = tolerance(cell)
        diff = ours - cell["value"]
        verdict = ("no counterpart" if not cell["counterpart"] else "not in run" if math.isnan(ours) else
                   "within" if abs(diff) <= tol or math.isnan(tol) else BEYOND)
        rows.append({"paper table": cell["paper_table"], "page": cell["page"], "row": cell["paper_row"],
                     "column": cell["column"], "paper": cell["value"], "run": ours, "difference": diff,
                     "tolerance": tol, "verdict": verdict})
    return pd.DataFrame(rows)


def _concat(frames: list) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---------------------------------------------------------------------------------------------------- report

def file_summary(c: Comparison) -> pd.DataFrame:
    """Per record file: its status, the rows per verdict, the rows on one side only and the tolerances used."""
    out = []
    for f in c.files.to_dict("records"):
        r = c.rows[c.rows["file"] == f["file"]] if len(c.rows) else pd.DataFrame(columns=["verdict"])
        u = c.unmatched[c.unmatched["file"] == f["file"]] if len(c.unmatched) else pd.DataFrame(columns=["side"])
        used = r["tolerance_used"].value_counts().items() if len(r) else []
        verdicts = {v: int((r["verdict"] == v).sum()) for v in (IDENTICAL, WITHIN, BEYOND)}
        sides = {f"only {s}": int((u["side"] == s).sum()) for s in ("run", "reference")}
        out.append({**f, "matched": len(r), **verdicts, **sides,
                    "tolerances used": ", ".join(f"{k} {n}" for k, n in used)})
    return pd.DataFrame(out)


def _headline(c: Comparison) -> str:
    counts = c.rows["verdict"].value_counts() if len(c.rows) else pd.Series(dtype=int)
    verdicts = ", ".join(f"{v} {int(counts.get(v, 0))}" for v in (IDENTICAL, WITHIN, BEYOND))
    nothing = " — no record row was compared" if not len(c.rows) else ""
    n = c.noise
    chance = (f" Against chance: {n.beyond} of {n.tested} sampled rows beyond their 95 % tolerance (≈ {n.expected:.0f} "
              f"expected if the run reproduced, at most {n.allowed}); {n.beyond_familywise} beyond the family-wise "
              f"tolerance (× {n.familywise:.2f}; {n.familywise_unspread} of them without a seed spread); "
              f"{n.exact_beyond} exact row(s) differ; {n.reversed} finding(s) reversed (holds ↔ contradicted).")
    chance = chance if len(c.beyond()) or len(c.flipped) else ""
    return (f"**{c.verdict()}** (exit {c.exit_code()}){nothing}: {len(c.flipped)} finding(s) flipped; record rows: "
            f"{verdicts}; {len(c.unmatched)} on one side only.{chance}")


def _sides(c: Comparison) -> pd.DataFrame:
    return pd.DataFrame([{"side": s, "root": str(root), **c.sides[s]}
                         for s, root in (("run", c.run), ("reference", c.reference))])


def _listed(rows: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """The first ``max_rows`` of ``rows`` (sorted by abs difference / tolerance) with the tolerance each used."""
    cols = ["file", "row", "run", "reference", "difference", "tolerance", "tolerance_used", "ratio"]
    names = {"tolerance": "tolerance (±)", "ratio": "abs difference / tolerance"}
    return rows[cols].head(max_rows).rename(columns=names)


def _within(c: Comparison) -> pd.DataFrame:
    w = c.rows[c.rows["verdict"] == WITHIN] if len(c.rows) else c.rows
    return w.sort_values("ratio", ascending=False, kind="stable") if len(w) else w


def _sections(c: Comparison, max_rows: int) -> list[tuple[str, str, pd.DataFrame | None]]:
    """``(title, text, table)`` of each section of the report, the flipped findings first."""
    n_beyond, within = len(c.beyond()), _within(c)
    return [
        ("Sides", "", _sides(c)),
        (f"⚠ Flipped findings ({len(c.flipped)})" if len(c.flipped) else "Findings",
         "reversed: holds ↔ contradicted; else one side is inconclusive (its interval touches the threshold)"
         if len(c.flipped) else f"{c.findings_status}: no finding flipped",
         c.flipped.assign(reversed=reversed_flips(c.flipped).to_numpy()) if len(c.flipped) else None),
        ("Records per file", f"Keys: every column but {', '.join(MEASURED)} and timing-like columns; "
                             f"tolerance: paired outcomes > unpaired CIs > exact (relative {RELATIVE_EXACT:g}) "
                             f"(+ seed spread).", file_summary(c)),
        (f"Rows beyond tolerance ({min(n_beyond, max_rows)} of {n_beyond}, by abs difference / tolerance)",
         f"beyond the family-wise tolerance: abs difference / tolerance > {c.noise.familywise:.2f}" if n_beyond
         else "",
         _listed(c.beyond(), max_rows) if n_beyond else None),
        (f"Rows within tolerance, not identical ({min(len(within), max_rows)} of {len(within)}, closest to it first)",
         "", _listed(within, max_rows) if len(within) else None),
        (f"Rows on one side only ({min(len(c.unmatched), max_rows)} of {len(c.unmatched)})", "",
         c.unmatched.head(max_rows) if len(c.unmatched) else None),
        ("Findings judged on one side only", "not measured there, absent, or an overall verdict over other scopes",
         c.findings_one_side if len(c.findings_one_side) else None),
        ("Tables (informational)", "", c.tables if len(c.tables) else None),
    ]


def _markdown(table: pd.DataFrame) -> str:
    """A markdown table, missing cells empty."""
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".6g", missingval="")


def render_markdown(c: Comparison, max_rows: int = MAX_ROWS) -> str:
    parts = [f"# spot compare — preset {c.preset}: {c.run} vs reference {c.reference}", _headline(c)]
    for title, text, table in _sections(c, max_rows):
        parts.append(f"## {title}")
        parts += [text] if text else []
        parts.append(_markdown(table) if table is not None else "none")
    return "\n\n".join(parts) + "\n"


def render_html(c: Comparison, max_rows: int = MAX_ROWS) -> str:
    """The report as HTML, with every compared row (and the tolerance it used) at the end."""

    sections = [*_sections(c, max_rows), ("Every compared row", "", c.rows.drop(columns="identical", errors="ignore"))]
    body = [f"<h1>{escape(f'spot compare — preset {c.preset}')}</h1>",
            f"<p>{escape(_headline(c).replace('**', ''))}</p>"]
    for title, text, table in sections:
        body.append(f"<h2>{escape(title)}</h2>" + (f"<p>{escape(text)}</p>" if text else ""))
        body.append(table.to_html(index=False) if table is not None and len(table) else "<p>none</p>")
    return "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>spot compare</title></head><body>\n" + \
        "\n".join(body) + "\n</body></html>\n"


# ---------------------------------------------------------------------------------------------------- CLI

def configure_parser(p) -> None:
    p.add_argument("run", metavar="RUN", help="root of the run (holds results/<preset>/, e.g. `.`)")
    p.add_argument("reference", metavar="REFERENCE", help="root of the reference (e.g. reference/embedded), or `paper`: "
                                                          "the paper's published numbers (spot.paper.published)")
    p.add_argument("--preset", default="embedded", help="the preset compared (default: %(default)s)")
    p.add_argument("--reference-preset", default=None, metavar="NAME",
                   help="the reference's preset when it differs from the run's (default: --preset), e.g. "
                        "pruning_ablations' CLS-IN21k records against reference/embedded's")
    p.add_argument("--seed-spread", default=None, metavar="CSV",
                   help="per-row training-seed standard deviations (key columns, optional `file`, `seed_sd`): widen "
                        "each row's tolerance by Z·√2·seed_sd in quadrature")
    p.add_argument("--out", default=None, help="write the markdown report here too")
    p.add_argument("--html", default=None, help="write an HTML report (with every compared row) here")
    p.add_argument("--max-rows", type=int, default=MAX_ROWS, help="rows listed per section (default: %(default)s)")
    p.add_argument("--report-only", action="store_true",
                   help="exit 0 even when the run did not reproduce (the workflow's last step: the report says it)")


def run_from_args(args) -> int:
    """Print the report (and write ``--out`` / ``--html``); exit 0 reproduced, 1 not."""

    if args.reference == PAPER:
        return _run_paper(args)
    c = compare(args.run, args.reference, args.preset, args.seed_spread, args.reference_preset)
    text = render_markdown(c, args.max_rows)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    if args.html:
        atomic_write_text(args.html, render_html(c, args.max_rows))
    return 0 if args.report_only else c.exit_code()


def _run_paper(args) -> int:
    """``spot compare RUN paper``: the run's tables against the paper's published numbers."""

    frame = compare_paper(args.run, args.preset)
    counts = frame["verdict"].value_counts()
    beyond = frame[frame["verdict"] == BEYOND]
    text = "\n\n".join([
        f"# {args.run} (preset {args.preset}) against the SPoT paper's published numbers",
        ", ".join(f"{v} {int(n)}" for v, n in counts.items()),
        "## Beyond the paper's tolerance\n\n" + (_markdown(beyond.head(args.max_rows)) if len(beyond) else "none"),
        "## Every published number\n\n" + _markdown(frame.head(args.max_rows))]) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    if args.html:
        atomic_write_text(args.html, frame.to_html(index=False))
    measured = frame["verdict"].isin(["within", BEYOND])
    return 0 if args.report_only or (measured.any() and not len(beyond)) else 1
