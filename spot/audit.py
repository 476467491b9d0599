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
the folder holding a published reference's ``PUBLISHED.json`` (``reference/<preset>/``, :mod:`spot.publish`), else
the folder above ``paper_figures/``, else the working directory. A published reference holds no weights and no data
splits: a checkpoint's link is then checked through its record (the record's own sha256 must be the one the result
was computed from) and marked ``unpublished``, as are the split files — neither breaks the chain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .provenance import sha256_file

__all__ = ["audit", "Link"]


@dataclass
class Link:
    path: str
    kind: str
    depth: int
    status: str  # ok | changed | missing | unchecked | unpublished
    detail: dict = field(default_factory=dict)

    @property
    def broken(self) -> bool:
        return self.status in ("changed", "missing")


_WEIGHTS = (".safetensors", ".pth", ".pt")


def find_root(path: Path) -> tuple[Path, bool]:
    """(the run root the recorded paths of ``path``'s chain are relative to, whether it is a published reference)."""
    from .publish import MARKER

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
        self.check(path, None, "output", depth)
        if not sidecar.is_file():
            self.links.append(Link(str(sidecar), "provenance", depth + 1, "missing"))
            return
        meta = _load(sidecar)
        prov = meta.get("provenance", {})
        self.links.append(Link(str(sidecar), "provenance", depth + 1, "ok",
                               {"code": _code(prov), "seeds": prov.get("seed")}))
        files = meta.get("files")
        if isinstance(files, dict):  # the files written, hashed when written
            for name, sha in files.items():
                self.check(path.parent / name, sha, "output file", depth + 1)
        else:
            self.links.append(Link(str(path), "output file", depth + 1, "unchecked",
                                   {"why": "its provenance predates output checksums"}))
        inputs = meta.get("inputs", {})
        # a result table's sidecar is checked where its table is followed, against the sha256 recorded here
        self.sidecars = {self.resolve(p): sha for p, sha in inputs.items() if p.endswith(".json")}
        for p, sha in inputs.items():
            if not p.endswith(".json"):
                self.input(Path(p), sha, depth + 2)

    def input(self, path: Path, sha, depth):
        if path.suffix == ".csv":
            if self.check(path, sha, "result table", depth):
                self.result_sidecar(path.with_suffix(".json"), depth + 1)
        elif path.suffix in _WEIGHTS:
            if self.published and not self.resolve(path).is_file():
                self.unpublished_checkpoint(path, sha, depth)
            elif self.check(path, sha, "checkpoint", depth):
                self.checkpoint_record(path.with_suffix(".json"), depth + 1)
        elif path.name == "manifest.json":
            if self.check(path, sha, "data manifest", depth):
                self.manifest(path, depth + 1)
        else:
            self.check(path, sha, "input", depth)

    def unpublished_checkpoint(self, path: Path, sha, depth):
        """A checkpoint a published reference holds only the record of: the record must describe the very weights
        (its ``sha256``) that the result was computed from."""
        record = self.resolve(path.with_suffix(".json"))
        recorded = _load(record).get("sha256")
        status = "unpublished" if sha is not None and recorded == sha else ("missing" if not record.is_file()
                                                                             else "changed")
        self.links.append(Link(str(self.resolve(path)), "checkpoint", depth, status,
                               {"record sha256": "matches" if status == "unpublished" else recorded}))
        if status == "unpublished":
            self.checkpoint_record(path.with_suffix(".json"), depth + 1)

    def result_sidecar(self, sidecar: Path, depth):
        sidecar = self.resolve(sidecar)
        if not sidecar.is_file():
            self.links.append(Link(str(sidecar), "result provenance", depth, "missing"))
            return
        sha = self.sidecars.get(sidecar)
        status = "unchecked" if sha is None else ("ok" if sha256_file(sidecar) == sha else "changed")
        meta = _load(sidecar)
        prov = meta.get("provenance", {})
        self.links.append(Link(str(sidecar), "result provenance", depth, status,
                               {"code": _code(prov), "device": prov.get("device"), "created": prov.get("created")}))
        for name, entry in (prov.get("inputs") or {}).items():
            if isinstance(entry, dict) and "path" in entry:
                self.input(Path(entry["path"]), entry.get("sha256"), depth + 1)

    def checkpoint_record(self, record_path: Path, depth):
        record_path = self.resolve(record_path)
        if not record_path.is_file():
            self.links.append(Link(str(record_path), "checkpoint record", depth, "missing"))
            return
        rec = _load(record_path)
        detail = {"origin": rec.get("origin"), "recipe": (rec.get("recipe") or {}).get("name"),
                  "source": rec.get("source"), "code": _code(rec.get("provenance", {}))}
        self.links.append(Link(str(record_path), "checkpoint record", depth, "ok",
                               {k: v for k, v in detail.items() if v}))
        for name, entry in ((rec.get("provenance") or {}).get("inputs") or {}).items():
            if isinstance(entry, dict) and "path" in entry:
                self.input(Path(entry["path"]), entry.get("sha256"), depth + 1)

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
        import pandas as pd

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


def format_links(links: list[Link]) -> str:
    mark = {"ok": "✓", "changed": "✗ CHANGED", "missing": "✗ MISSING", "unchecked": "·", "unpublished": "○"}
    lines = []
    for link in links:
        detail = ", ".join(f"{k}: {v}" for k, v in link.detail.items() if v)
        lines.append(f"{'  ' * link.depth}{mark[link.status]} {link.kind}: {link.path}" + (f"  [{detail}]" if detail else ""))
    return "\n".join(lines)


def run_from_args(args) -> int:
    links, value = audit(args.path, row=args.row, column=args.column)
    if value is not None:
        print(f"value: {value}")
    print(format_links(links))
    broken = [link for link in links if link.broken]
    if broken:
        print(f"\nthe chain is broken: {len(broken)} link(s) changed or missing since they were used", flush=True)
        return 1
    unpublished = sum(link.status == "unpublished" for link in links)
    note = f" ({unpublished} not published — weights and data splits: checked through their records)" \
        if unpublished else ""
    print(f"\nchain intact: {len(links)} links checked{note}")
    return 0


def configure_parser(parser):
    parser.add_argument("path", help="a table or figure under paper_figures/<preset>/ (or any file with a "
                                     ".provenance.json sidecar)")
    parser.add_argument("--row", type=int, default=None, help="0-based row of the table to show")
    parser.add_argument("--column", default=None, help="column of the table to show")
    return parser
