"""``spot spread``: each result row's training-seed spread, from runs that differ only in their training seeds.

The training-seed presets (``config/embedded_seed1.yaml``, ``embedded_seed2.yaml``) train the embedded default's
models again with other seeds and re-run every experiment on the same images with the same placement draws; their
records and the default's match row for row on the key columns (:func:`spot.reproduce.compare.is_measured`). For every row
present in all of them this writes ``seed_sd`` — the standard deviation of ``value`` over the runs (ddof = 1) — in
the format ``spot compare --seed-spread`` reads (``file``, the key columns, ``seed_sd``; plus ``seed_mean``,
``seed_min``, ``seed_max`` and ``n_runs`` for a reader), with a provenance sidecar naming every record it read with
its sha256. Timing records (``throughput/``, a timing ``metric`` such as ``images_per_s``) are left out, as in the
comparison.

    spot spread reference/embedded/results/embedded results/embedded_seed1 results/embedded_seed2 \
        --stand-in-for cls_in1k mae_in1k --out reference/embedded/seed_spread.csv

The embedded training-seed presets train one backbone (CLS-IN21k) so that a run fits a 2-core session;
``--stand-in-for`` applies its rows to the same records of other backbones (``measured_on`` names the backbone that
measured them, and ``spot compare`` says so in every row it widens): a stand-in, not a measurement of theirs.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .compare import (FILE, FINDING_KEYS, MEASURED_ON, NOT_COMPARED, OCCURRENCE, OVERALL, SEED_SD, SPREAD_INFO,
                      VERDICT, _keyed, _number, _read_csv, _record_files, _timing_rows, is_measured, scopes_differ)
from ..findings.registry import NOT_MEASURED
from ..provenance import sha256_file
from ..results import write_table

__all__ = ["seed_spread", "stand_in", "summary", "findings_across", "configure_parser", "run_from_args"]


def _file_spread(paths: list[Path], rel: str) -> pd.DataFrame:
    """The spread of one record file over the runs' copies of it: one row per key present in every run."""
    frames = [f[~_timing_rows(f)].reset_index(drop=True) for f in map(_read_csv, paths)]  # images/s: not compared
    keys = [c for c in frames[0].columns if not is_measured(c)]
    if any([c for c in f.columns if not is_measured(c)] != keys for f in frames[1:]):
        raise ValueError(f"{rel}: the runs' key columns differ ({', '.join(str(p) for p in paths)}); the spread needs "
                         f"runs of the same code and preset family")
    values = []
    for i, frame in enumerate(frames):
        keyed = _keyed(frame, keys)
        keyed[f"value{i}"] = frame["value"].map(_number)
        values.append(keyed.set_index(keys + [OCCURRENCE]))
    joined = pd.concat(values, axis=1, join="inner")
    runs = joined[[f"value{i}" for i in range(len(frames))]]
    info = (runs.mean(axis=1), runs.min(axis=1), runs.max(axis=1), len(frames))
    out = pd.DataFrame({SEED_SD: runs.std(axis=1, ddof=1), **dict(zip(SPREAD_INFO, info))})
    out = out.reset_index()
    if out[OCCURRENCE].max() > 0 if len(out) else False:
        raise ValueError(f"{rel}: repeated keys; the spread cannot tell its rows apart")
    return out.drop(columns=[OCCURRENCE]).assign(**{FILE: rel})


def seed_spread(results_dirs: list) -> tuple[pd.DataFrame, dict]:
    """(the spread rows of every record file present in all ``results_dirs``, {path: sha256} of what was read)."""
    dirs = [Path(d) for d in results_dirs]
    if len(dirs) < 3:
        raise ValueError(f"a spread needs at least 3 runs (the default and two training-seed presets), got {len(dirs)}")
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"no results folder {', '.join(missing)}: run those presets first (snakemake --cores "
                                f"2 --configfile config/embedded_seed1.yaml …)")
    common = set.intersection(*(_record_files(d) for d in dirs))
    rels = sorted(r for r in common if r.split("/")[0] not in NOT_COMPARED)
    frames, read = [], {}
    for rel in rels:
        paths = [d / rel for d in dirs]
        frames.append(_file_spread(paths, rel))
        read.update({str(p): sha256_file(p) for p in paths})
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[FILE, SEED_SD])
    first = [FILE] + [c for c in frame.columns if c not in (FILE, SEED_SD, *SPREAD_INFO)]
    return frame[first + [SEED_SD, *SPREAD_INFO]], read


def stand_in(frame: pd.DataFrame, backbones: list[str]) -> pd.DataFrame:
    """``frame`` plus, for each of ``backbones``, a copy of the rows of its per-backbone record files
    (``<kind>/<measured>.csv``) moved to that backbone's (file and ``backbone`` cell), ``measured_on`` the measured
    backbone. The measured backbone must be the only one in the spread."""
    if "backbone" not in frame.columns:
        raise ValueError("--stand-in-for: the spread has no `backbone` column to stand in for")
    measured = sorted(b for b in frame["backbone"].dropna().unique() if b != "")
    if len(measured) != 1:
        raise ValueError(f"--stand-in-for needs a spread measured on one backbone, got {measured or 'none'}")
    (source,) = measured
    own = frame[FILE].str.split("/").str[-1] == f"{source}.csv"
    if not own.any():
        raise ValueError(f"--stand-in-for: no per-backbone record file <kind>/{source}.csv in the spread")
    copies = []
    for target in backbones:
        if target == source:
            raise ValueError(f"--stand-in-for {target}: that is the backbone the spread measured")
        rows = frame[own].copy()
        rows[FILE] = rows[FILE].str.replace(rf"{source}\.csv$", f"{target}.csv", regex=True)
        rows["backbone"] = rows["backbone"].where(rows["backbone"] != source, target)
        copies.append(rows.assign(**{MEASURED_ON: source}))
    out = pd.concat([frame.assign(**{MEASURED_ON: ""}), *copies], ignore_index=True)
    return out[[c for c in out.columns if c != MEASURED_ON] + [MEASURED_ON]]


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per record kind (the file's folder) and metric, of the measured rows (not the stand-ins): how many rows, and
    the median, 90th percentile and largest ``seed_sd`` (in the units of ``value``)."""
    own = frame[frame[MEASURED_ON] == ""] if MEASURED_ON in frame.columns else frame
    kind = own[FILE].str.split("/").str[0].str.removesuffix(".csv")
    metric = own["metric"] if "metric" in own.columns else pd.Series("", index=own.index)
    sd = own[SEED_SD].map(_number)
    groups = pd.DataFrame({"kind": kind, "metric": metric.fillna(""), "sd": sd}).groupby(["kind", "metric"])["sd"]
    return pd.DataFrame({"rows": groups.size(), "median": groups.median(), "p90": groups.quantile(0.9),
                         "max": groups.max()}).reset_index()


def findings_across(results_dirs: list) -> tuple[pd.DataFrame, dict]:
    """Each finding × scope's verdict in every run (``paper_figures/<preset>/findings.csv`` beside each
    ``results/<preset>/``), for the scopes every run measured (a finding's overall verdict only where the runs have
    the same scopes), and whether the runs agree: a verdict that changes with the training seed is not a property of
    the method. ``({path: sha256} read)`` beside it."""
    keys, tables, read = list(FINDING_KEYS), [], {}
    for d in (Path(d) for d in results_dirs):
        path = d.parent.parent / "paper_figures" / d.name / "findings.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no findings table beside {d} (run the preset to its end)")
        read[str(path)] = sha256_file(path)
        tables.append(_read_csv(path))
    joined = pd.concat([t.set_index(keys)[VERDICT].rename(f"run{i}") for i, t in enumerate(tables)], axis=1,
                       join="inner")
    other = scopes_differ(tables)  # an overall verdict over other scopes is not compared
    joined = joined[~(joined.index.get_level_values(1) == OVERALL) | ~joined.index.get_level_values(0).isin(other)]
    measured = joined[(joined != NOT_MEASURED).all(axis=1)]
    agree = measured.nunique(axis=1) == 1
    return measured.assign(agreement=agree.map({True: "same in every run", False: "varies"})).reset_index(), read


def configure_parser(p) -> None:
    p.add_argument("results", nargs="+", help="the runs' results folders (results/embedded results/embedded_seed1 …)")
    p.add_argument("--out", required=True, help="the spread CSV to write (its provenance goes to the .json beside it)")
    p.add_argument("--stand-in-for", nargs="+", default=[], metavar="BACKBONE",
                   help="apply the spread of the one backbone the runs trained to these backbones' records too, "
                        "marked as a stand-in (measured_on)")
    p.add_argument("--findings-out", default=None, metavar="CSV",
                   help="also write each finding × scope's verdict in every run and whether they agree")


def run_from_args(args) -> int:
    frame, read = seed_spread(args.results)
    if args.stand_in_for:
        frame = stand_in(frame, args.stand_in_for)
    inputs = {f"result:{path}": {"path": path, "sha256": sha} for path, sha in read.items()}
    write_table(frame.to_dict("records"), args.out, config={"runs": list(args.results),
                                                             "stand_in_for": list(args.stand_in_for)}, inputs=inputs)
    wide = frame[frame[SEED_SD] > 0]
    print(f"{len(frame)} rows of {frame[FILE].nunique()} record files in {args.out}; {len(wide)} vary across seeds "
          f"(median seed_sd {wide[SEED_SD].median() if len(wide) else 0:.2f})")
    print(summary(frame).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if args.findings_out:
        verdicts, read = findings_across(args.results)
        write_table(verdicts.to_dict("records"), args.findings_out, config={"runs": list(args.results)},
                    inputs={f"findings:{p}": {"path": p, "sha256": sha} for p, sha in read.items()})
        varies = verdicts[verdicts["agreement"] == "varies"]
        print(f"{len(verdicts)} finding scopes measured in every run; {len(varies)} change verdict across them:")
        print(varies.to_string(index=False) if len(varies) else "none")
    return 0
