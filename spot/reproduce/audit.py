"""``spot audit``: where a number came from — the provenance chain of a table or figure, checked link by link.

From an output of ``paper_figures/<preset>/`` the chain is followed through the JSON sidecars and records this
project writes beside every file: table/figure → its ``.provenance.json`` (the result tables it was built from, with
sha256) → each result table's ``.json`` sidecar (config, code version, software, device, and the checkpoints and
data manifest it read, with path and sha256) → each checkpoint's ``.json`` record (its recipe, training data
manifest, parent checkpoint with sha256, code version) → the parent's record … → the downloaded weights' record
(source URL) and the dataset manifest (its split files' sha256). Every link is re-hashed: a file that changed since
it was used, or is missing, breaks the chain (non-zero exit). The table's or figure's own files are checked against
the sha256 its provenance recorded when it was written.

Recorded paths are relative to the run's root (``results/embedded/…``). The root is found from the audited file:
the folder holding a published reference's ``PUBLISHED.json`` (``reference/<preset>/``, :mod:`spot.reproduce.publish`), else
the folder above ``paper_figures/``, else the working directory. A published reference holds no weights and no data
splits: a checkpoint's link is then checked through its record (the record's own sha256 must be the one the result
was computed from) and marked ``unpublished``, as are the split files — neither breaks the chain.

What is checked: every output file against its provenance (``files``); every result table and its ``.json`` sidecar
against the table's provenance; every checkpoint's weights and its record against the result's (or the child
checkpoint's) provenance (``sha256``, ``record_sha256``); an ``official`` record's released file against the
record; the data manifest and its split files. The table's own provenance sidecar is the root: in a published
reference it is checked against ``PUBLISHED.json``. A link with no recorded checksum is ``unchecked`` (reported;
``--strict`` fails on it). Loading a checkpoint verifies it against its record too
(:func:`spot.weights.checkpoints.verify_weights`), so no result is computed from weights its record does not describe.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..provenance import sha256_file
from .publish import MARKER, REFERENCE_DIR
import pandas as pd

__all__ = ["audit", "Link", "verdict", "format_links", "cell_rows"]


@dataclass
class Link:
    path: str
    kind: str
    depth: int
    status: str  # ok | changed | missing | unchecked | unpublished | root
    detail: dict = field(default_factory=dict)

    @property
    def broken(self) -> bool:
        return self.status in ("changed", "missing")


_WEIGHTS = (".safetensors", ".pth", ".pt")


def find_root(path: Path) -> tuple[Path, bool]:
    """(the run root the recorded paths of ``path``'s chain are relative to, whether it is a published reference)."""

    path = Path(path).resolve()
    for parent in path.parents:
        if (parent / MARKER).is_file():
            return parent, True
    if "paper_figures" in path.parts:
        index = len(path.parts) - 1 - path.parts[::-1].index("paper_figures")
        return Path(*path.parts[:index]), False
    return Path.cwd(), False


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _code(prov: dict) -> dict:
    code = prov.get("code", {})
    return {k: code.get(k) for k in ("version", "git_commit", "git_dirty") if k in code}


class _Walker:
    def __init__(self, root: Path | None = None, published: bool = False):
        self.links: list[Link] = []
        self.seen: set[str] = set()
        self.root = root
        self.published = published
        self.sidecars: dict = {}
        self.published_files = {}
        if published:
            self.published_files = _load(root / MARKER).get("files") or {}

    def resolve(self, path) -> Path:
        path = Path(path)
        return path if path.is_absolute() or self.root is None else self.root / path

    def check(self, path, sha, kind, depth, detail=None) -> bool:
        path = self.resolve(path)
        key = f"{path}:{sha}"
        if key in self.seen:
            return False
        self.seen.add(key)
        if not path.is_file():
            self.links.append(Link(str(path), kind, depth, "missing", detail or {}))
            return False
        status = "unchecked" if sha is None else ("ok" if sha256_file(path) == sha else "changed")
        self.links.append(Link(str(path), kind, depth, status, detail or {}))
        return status != "changed"

    # --------------------------------------------------------------------------------------------------- kinds
    def output(self, path: Path, depth=0):
        path = Path(path).resolve()
        sidecar = path.parent / f"{path.stem}.provenance.json"
        if not sidecar.is_file() and path.suffix == ".csv" and path.with_suffix(".json").is_file():
            # a table written as a result (spot spread's seed_spread.csv): its sidecar names what it read
            self.check(path, None, "output", depth, {"why": "a result table: what reads it records its checksum"})
            self.result_sidecar(path.with_suffix(".json"), depth + 1)
            return
        if not sidecar.is_file():
            self.check(path, None, "output", depth, {"why": "no provenance sidecar records its checksum"})
            self.links.append(Link(str(sidecar), "provenance", depth + 1, "missing"))
            return
        meta = _load(sidecar)
        prov = meta.get("provenance", {})
        self.root_sidecar(sidecar, depth + 1, {"code": _code(prov), "seeds": prov.get("seed")})
        files = meta.get("files")
        if isinstance(files, dict):  # the files written, hashed when written
            for name, sha in files.items():
                self.check(path.parent / name, sha, "output file", depth + 1)
            if path.name not in files:
                self.check(path, None, "output", depth, {"why": "not among the files its provenance hashed"})
        else:
            self.check(path, None, "output file", depth + 1, {"why": "its provenance predates output checksums"})
        inputs = meta.get("inputs", {})
        # a result table's sidecar is checked where its table is followed, against the sha256 recorded here
        self.sidecars = {self.resolve(p): sha for p, sha in inputs.items() if p.endswith(".json")}
        for p, sha in inputs.items():
            if not p.endswith(".json"):
                self.input(Path(p), sha, depth + 2)

    def root_sidecar(self, sidecar: Path, depth, detail):
        """The chain's root: in a published reference checked against ``PUBLISHED.json`` (committed), else the
        start of trust (``root``: nothing records its checksum)."""
        if self.published:
            rel = str(sidecar.resolve().relative_to(self.root.resolve()))
            self.check(sidecar, self.published_files.get(rel), "provenance", depth,
                       {**detail, "against": "PUBLISHED.json"})
        else:
            self.links.append(Link(str(sidecar), "provenance", depth, "root", detail))

    def in_reference(self, path: Path) -> tuple["_Walker", Path]:
        """(the walker, the path) for a recorded path: a path relative to the repository into a published reference
        (``reference/<name>/…``: a file read from several references, spot spread's) is walked from that
        reference's root, sharing this walker's links; any other path by this walker."""
        if not (self.published and path.parts[:1] == (REFERENCE_DIR,)) or self.resolve(path).is_file():
            return self, path
        absolute = self.root.resolve().parent.parent / path
        root, published = find_root(absolute)
        if not published or root.resolve() == self.root.resolve():
            return self, absolute
        walker = _Walker(root, True)
        walker.links, walker.seen = self.links, self.seen
        return walker, absolute

    def input(self, path: Path, sha, depth, record_sha=None):
        walker, path = self.in_reference(path)
        if walker is not self:
            return walker.input(path, sha, depth, record_sha)
        if path.suffix == ".csv":
            if self.check(path, sha, "result table", depth):
                table = self.resolve(path)
                if not table.with_suffix(".json").is_file() and \
                        (table.parent / f"{table.stem}.provenance.json").is_file():
                    sidecars = self.sidecars  # a table read as an input (spot spread --findings-out): its chain
                    self.output(table, depth + 1)
                    self.sidecars = sidecars
                else:
                    self.result_sidecar(path.with_suffix(".json"), depth + 1)
        elif path.suffix in _WEIGHTS:
            if self.published and not self.resolve(path).is_file():
                self.unpublished_checkpoint(path, sha, depth, record_sha)
            elif self.check(path, sha, "checkpoint", depth):
                self.checkpoint_record(path.with_suffix(".json"), depth + 1, record_sha)
        elif path.suffix == ".json" and path.name != "manifest.json":  # a record standing for its weights: official
            self.checkpoint_record(path, depth, sha)
        elif path.name == "manifest.json":
            if self.check(path, sha, "data manifest", depth):
                self.manifest(path, depth + 1)
        else:
            self.check(path, sha, "input", depth)

    def unpublished_checkpoint(self, path: Path, sha, depth, record_sha=None):
        """A checkpoint a published reference holds only the record of: the record must describe the very weights
        (its ``sha256``) that the result was computed from."""
        record = self.resolve(path.with_suffix(".json"))
        recorded = _load(record).get("sha256")
        status = "unpublished" if sha is not None and recorded == sha else ("missing" if not record.is_file()
                                                                             else "changed")
        self.links.append(Link(str(self.resolve(path)), "checkpoint", depth, status,
                               {"record sha256": "matches" if status == "unpublished" else recorded}))
        if status == "unpublished":
            self.checkpoint_record(path.with_suffix(".json"), depth + 1, record_sha)

    def result_sidecar(self, sidecar: Path, depth):
        sidecar = self.resolve(sidecar)
        if not sidecar.is_file():
            self.links.append(Link(str(sidecar), "result provenance", depth, "missing"))
            return
        sha = self.sidecars.get(sidecar)
        if sha is None and self.published:  # nothing recorded it: the reference's PUBLISHED.json did
            sha = self.published_files.get(str(sidecar.resolve().relative_to(self.root.resolve())))
        status = "unchecked" if sha is None else ("ok" if sha256_file(sidecar) == sha else "changed")
        meta = _load(sidecar)
        prov = meta.get("provenance", {})
        self.links.append(Link(str(sidecar), "result provenance", depth, status,
                               {"code": _code(prov), "device": prov.get("device"), "created": prov.get("created")}))
        self.inputs(prov, depth + 1)

    def inputs(self, prov: dict, depth):
        """Every input a provenance block names (checkpoints with their record's checksum, the data manifest)."""
        for name, entry in (prov.get("inputs") or {}).items():
            if isinstance(entry, dict) and "path" in entry:
                self.input(Path(entry["path"]), entry.get("sha256"), depth, entry.get("record_sha256"))

    def checkpoint_record(self, record_path: Path, depth, sha=None):
        """A checkpoint's record, against the checksum the link pointing to it recorded (``unchecked`` where that
        link predates record checksums); then what the record names: the released file of an ``official`` record
        (against the record's sha256), the parent checkpoint and data of a trained one."""
        record_path = self.resolve(record_path)
        rec = _load(record_path)
        detail = {"origin": rec.get("origin"), "recipe": (rec.get("recipe") or {}).get("name"),
                  "source": rec.get("source"), "code": _code(rec.get("provenance", {}))}
        if sha is None:
            detail["why"] = "the result that read it recorded no checksum of the record"
        if not self.check(record_path, sha, "checkpoint record", depth, {k: v for k, v in detail.items() if v}):
            return
        if rec.get("format") == "official":
            released = Path(rec.get("path", ""))
            if self.published and not released.is_file():
                self.links.append(Link(str(released), "released checkpoint", depth + 1, "unpublished",
                                       {"sha256": rec.get("sha256")}))
            else:
                self.check(released, rec.get("sha256"), "released checkpoint", depth + 1)
        self.inputs(rec.get("provenance") or {}, depth + 1)

    def manifest(self, path: Path, depth):
        path = self.resolve(path)
        manifest = _load(path)
        for split, entry in (manifest.get("splits") or {}).items():
            if isinstance(entry, dict) and "file" in entry:
                split_file = path.parent / entry["file"]
                if self.published and not split_file.is_file():
                    self.links.append(Link(str(split_file), f"data ({split})", depth, "unpublished",
                                           {"sha256": entry.get("sha256")}))
                else:
                    self.check(split_file, entry.get("sha256"), f"data ({split})", depth)


def audit(path, row: int | None = None, column: str | None = None) -> tuple[list[Link], str | None]:
    """The provenance chain of ``path`` (a table CSV/MD/TeX or a figure PDF/PNG), and the cell value asked for."""
    path = Path(path)
    if not path.exists():
        published = Path("reference") / path.parent.name / path.parent / path.name \
            if path.parent.parent.name == "paper_figures" else None
        hint = f", or audit the published one: spot audit {published}" if published and published.exists() else ""
        raise FileNotFoundError(f"{path} does not exist; run the workflow target that makes it first "
                                f"(snakemake --cores 2 {path}){hint}")
    value = None
    if row is not None or column is not None:

        frame = pd.read_csv(path.with_suffix(".csv"))
        if column is not None and column not in frame.columns:
            raise ValueError(f"no column {column!r} in {path}; columns: {list(frame.columns)}")
        if row is not None and not 0 <= row < len(frame):
            raise ValueError(f"row {row} out of range: {path} has {len(frame)} rows (0-based)")
        cell = frame.iloc[row] if row is not None else frame[column]
        value = str(cell[column] if (row is not None and column is not None) else cell.to_dict() if row is not None
                    else cell.tolist())
    walker = _Walker(*find_root(path))
    walker.output(path)
    return walker.links, value


_SHOWN = ("experiment", "backbone", "variant", "method", "setting", "placement", "init", "positions", "source",
          "target", "budget", "keep_ratio", "seed", "metric", "value", "n_images", "n_correct", "ci_low", "ci_high")


def cell_rows(path, row: int, column: str) -> list[dict] | None:
    """The result record rows a table cell was computed from (its provenance's ``cells``), each with its address
    (``file#row``), its key columns and value, and the image subset it was measured on (the result sidecar's
    ``subsets``); None when the table recorded no lineage for that cell (a count, a setting, a cell no record row
    makes)."""
    path = Path(path)
    meta = _load(path.parent / f"{path.stem}.provenance.json")
    sources = (meta.get("cells") or {}).get(f"{row}|{column}")
    if sources is None:
        return None

    root, _ = find_root(path)
    out, frames = [], {}
    for source in sources:
        file, _, index = source.rpartition("#")
        resolved = Path(file) if Path(file).is_absolute() else root / file
        if resolved not in frames:
            frames[resolved] = pd.read_csv(resolved, dtype={"outcomes": str}) if resolved.is_file() else None
        frame = frames[resolved]
        if frame is None or not int(index) < len(frame):
            out.append({"row": source, "missing": True})
            continue
        record = frame.iloc[int(index)]
        subsets = _load(resolved.with_suffix(".json")).get("subsets") or {}
        out.append({"row": source, **{k: record[k] for k in _SHOWN if k in record and pd.notna(record[k])},
                    "images": subsets})
    return out


def format_cell_rows(rows: list[dict] | None) -> str:
    if rows is None:
        return "record rows: none recorded for this cell (not computed from result rows, or built before lineage)"
    lines = [f"record rows behind the cell ({len(rows)}):"]
    for r in rows:
        if r.get("missing"):
            lines.append(f"  ✗ {r['row']}: not found")
            continue
        keys = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("row", "images"))
        lines.append(f"  {r['row']}: {keys}")
        for split, sub in (r.get("images") or {}).items():
            lines.append(f"      images ({split}): {sub.get('kind')} {sub.get('n_images')} of {sub.get('split_size')}"
                         f" (seed {sub.get('seed')}, {sub.get('classes')} classes, indices sha256 "
                         f"{str(sub.get('indices_sha256'))[:12]}…)")
    return "\n".join(lines)


def format_links(links: list[Link]) -> str:
    mark = {"ok": "✓", "changed": "✗ CHANGED", "missing": "✗ MISSING", "unchecked": "? UNCHECKED",
            "unpublished": "○", "root": "◇"}
    lines = []
    for link in links:
        detail = ", ".join(f"{k}: {v}" for k, v in link.detail.items() if v)
        lines.append(f"{'  ' * link.depth}{mark[link.status]} {link.kind}: {link.path}" + (f"  [{detail}]" if detail else ""))
    return "\n".join(lines)


def verdict(links: list[Link], strict: bool = False) -> tuple[int, str]:
    """(exit code, summary line): 1 when a link changed or is missing, or — ``strict`` — could not be checked."""
    broken = [link for link in links if link.broken]
    unchecked = [link for link in links if link.status == "unchecked"]
    if broken:
        return 1, f"the chain is broken: {len(broken)} link(s) changed or missing since they were used"
    if unchecked and strict:
        return 1, (f"--strict: {len(unchecked)} link(s) could not be checked (no checksum was recorded for them; "
                   "re-run what wrote them)")
    unpublished = sum(link.status == "unpublished" for link in links)
    notes = [f"{unpublished} not published — weights and data splits: checked through their records"] \
        if unpublished else []
    if unchecked:
        notes.append(f"{len(unchecked)} unchecked: no checksum recorded (--strict makes this a failure)")
    if any(link.status == "root" for link in links):
        notes.append("◇ the root: its checksum is recorded nowhere (a published reference's PUBLISHED.json does)")
    return 0, f"chain intact: {len(links)} links" + (f" ({'; '.join(notes)})" if notes else "")


def run_from_args(args) -> int:
    links, value = audit(args.path, row=args.row, column=args.column)
    if value is not None:
        print(f"value: {value}")
    if args.row is not None and args.column is not None:
        print(format_cell_rows(cell_rows(args.path, args.row, args.column)))
    print(format_links(links))
    code, summary = verdict(links, strict=args.strict)
    print(f"\n{summary}", flush=True)
    return code


def configure_parser(parser):
    parser.add_argument("path", help="a table or figure under paper_figures/<preset>/ (or any file with a "
                                     ".provenance.json sidecar)")
    parser.add_argument("--row", type=int, default=None, help="0-based row of the table to show")
    parser.add_argument("--column", default=None, help="column of the table to show (with --row: also the result "
                                                        "record rows and image subsets behind that cell)")
    parser.add_argument("--strict", action="store_true", help="fail (exit 1) when a link could not be checked "
                                                              "(no checksum recorded), not only when one changed")
    return parser
