"""Prepare ImageNet-1k (ILSVRC-2012) from the official archives into the folder layout the rest of ``spot`` reads.

Input (``raw_dir``): the three files from image-net.org (download after registering):
``ILSVRC2012_devkit_t12.tar.gz``, ``ILSVRC2012_img_val.tar`` and, for the train split, ``ILSVRC2012_img_train.tar``.

Output (``out_dir``), exactly what :class:`torchvision.datasets.ImageNet` ``(root=out_dir, split=...)`` reads::

    out_dir/meta.bin                  torchvision's META_FILE (wnid → class names, val ground truth)
    out_dir/train/<wnid>/*.JPEG
    out_dir/val/<wnid>/*.JPEG
    out_dir/manifest.json             images per class and split, class order, archives' size / sha256 / md5, provenance

The archive parsing is torchvision's own (``parse_devkit_archive``, ``parse_train_archive``,
``parse_val_archive``), so the layout and the class order are torchvision's by construction. What this module adds:

* **one hashing pass per archive** — torchvision's parse functions each re-check the archive's md5 (an extra full
  read of ~140 GB). We compute md5 *and* sha256 in a single streaming pass, compare the md5 with torchvision's
  ``ARCHIVE_META`` ourselves, cache both in a state file keyed by the archive's size and mtime (a resumed run does
  not re-hash), and call the parse functions with ``_verify_archive`` patched to a no-op
  (:func:`_md5_checked_elsewhere`);
* **member-checked extraction** — torchvision extracts with ``tarfile``'s ``data`` filter in force
  (:func:`_members_checked`), with or without the md5 check: a member that would land outside the extraction folder
  (``../x``, an absolute path, a link pointing out of it) or a device file is refused, and nothing is written for it;
* **atomic, resumable splits** — each split is extracted into ``out_dir/.partial-<split>`` and renamed to its final
  folder only when complete and checked; a finished split is skipped on re-run, an interrupted one is redone;
* **clear errors** naming the file and the fix, for a missing, truncated, corrupt or wrong archive.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torchvision.datasets.imagenet as tv_imagenet
from torchvision.datasets.folder import pil_loader

from ..provenance import atomic_write_json, provenance

__all__ = [
    "ImageNetError", "ArchiveMissingError", "ArchiveChecksumError", "CorruptArchiveError", "WrongArchiveError",
    "UnsafeArchiveError", "OutputConflictError", "PreparedImageNetMissingError", "CorruptImageError",
    "SPLITS", "STATE_FILE", "MANIFEST_FILE", "archive_file_names", "hash_archive", "prepare_imagenet",
    "checked_image_loader", "imagenet_dataset", "configure_parser", "run_from_args",
]

SPLITS: tuple[str, ...] = ("train", "val")
STATE_FILE = ".prepare-state.json"
MANIFEST_FILE = "manifest.json"
_WORK_FOLDER = ".work"
_PARTIAL_PREFIX = ".partial-"
_DOWNLOAD_HINT = ("the official files are at https://image-net.org/challenges/LSVRC/2012/2012-downloads.php, "
                  "free after registering an account")
_DEVKIT_REQUIRED_MEMBERS = ("ILSVRC2012_devkit_t12/data/meta.mat",
                            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt")
_TRAIN_MEMBER = re.compile(r"^(n\d{8})\.tar$")
# Errors that tarfile / gzip / zlib raise on a truncated or damaged archive (OSError in general is not caught:
# a full disk must not be reported as a corrupt download).
_ARCHIVE_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


# ----------------------------------------------------------------------------------------------------- errors
class ImageNetError(ValueError):
    """Base class of the errors :func:`prepare_imagenet` raises for bad inputs or a conflicting output folder."""


class ArchiveMissingError(FileNotFoundError):
    """``raw_dir`` or one of the ILSVRC-2012 archives is not there."""


class ArchiveChecksumError(ImageNetError):
    """An archive's md5 differs from the official file's (truncated, corrupt or a different file)."""


class CorruptArchiveError(ImageNetError):
    """An archive could not be read to the end (truncated download or damaged file)."""


class WrongArchiveError(ImageNetError):
    """An archive reads fine but is not the ILSVRC-2012 file it is named after."""


class UnsafeArchiveError(ImageNetError):
    """An archive holds a member that would be written outside its extraction folder (or a device file)."""


class OutputConflictError(ImageNetError):
    """``out_dir`` holds, at a path this module writes, something it did not make."""


class PreparedImageNetMissingError(FileNotFoundError):
    """:func:`imagenet_dataset` was pointed at a folder that :func:`prepare_imagenet` has not prepared."""


class CorruptImageError(ValueError):
    """An image file of the prepared dataset cannot be decoded."""


# ------------------------------------------------------------------------------------------------ helpers
def archive_file_names() -> dict[str, str]:
    """Archive kind (``devkit``, ``train``, ``val``) → official file name, from torchvision's ``ARCHIVE_META``."""
    return {kind: name for kind, (name, _md5) in tv_imagenet.ARCHIVE_META.items()}


def hash_archive(path: str | os.PathLike, *, chunk_bytes: int = 16 << 20) -> dict[str, str]:
    """md5 and sha256 of a file in one streaming pass (the md5 to compare with torchvision's ``ARCHIVE_META``,
    the sha256 for the manifest)."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


@contextlib.contextmanager
def _md5_checked_elsewhere() -> Iterator[None]:
    """Replace ``torchvision.datasets.imagenet._verify_archive`` by a no-op while torchvision parses an archive.

    Why: each ``parse_*_archive`` re-reads the whole archive to check its md5 (~140 GB for train) before
    extracting. :func:`prepare_imagenet` has already hashed the archive (md5 and sha256 together, once, cached
    across runs) and compared the md5 itself, so a second pass only costs time. The original is always restored.
    """
    original = tv_imagenet._verify_archive
    tv_imagenet._verify_archive = lambda root, file, md5: None
    try:
        yield
    finally:
        tv_imagenet._verify_archive = original


@contextlib.contextmanager
def _members_checked() -> Iterator[None]:
    """Make ``tarfile``'s ``data`` filter the default while torchvision extracts (it calls ``extractall`` without
    one, which trusts every member): a member outside the folder, a link out of it or a device file is refused.

    Why here: with ``verify_md5=False`` any file named like an ILSVRC-2012 archive is extracted, and a ``../``
    member would otherwise be written outside ``out_dir``. The original default is always restored.
    """
    if not hasattr(tarfile, "data_filter"):
        raise ImageNetError("this Python's tarfile cannot check archive members (extraction filters: Python 3.10.12, "
                            "3.11.4, 3.12 or later); upgrade Python to prepare ImageNet")
    original = tarfile.TarFile.extraction_filter
    tarfile.TarFile.extraction_filter = staticmethod(tarfile.data_filter)
    try:
        yield
    finally:
        tarfile.TarFile.extraction_filter = original


@contextlib.contextmanager
def _extracting(archive: Path) -> Iterator[None]:
    """What torchvision's parse functions run under: read errors named, md5 checked elsewhere, members checked."""
    with _reading(archive), _md5_checked_elsewhere(), _members_checked():
        yield


@contextlib.contextmanager
def _reading(archive: Path) -> Iterator[None]:
    """Turn tarfile / gzip read errors into a :class:`CorruptArchiveError` naming ``archive`` (a member refused by
    the extraction filter: an :class:`UnsafeArchiveError`)."""
    try:
        yield
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(
            f"archive {archive} holds a member that would be written outside its extraction folder or is not a "
            f"plain file ({type(exc).__name__}: {exc}): refused, it is not the official file; re-download it "
            f"({_DOWNLOAD_HINT})"
        ) from exc
    except _ARCHIVE_READ_ERRORS as exc:
        raise CorruptArchiveError(
            f"archive {archive} cannot be read to the end ({type(exc).__name__}: {exc}): it is truncated or "
            f"corrupt; re-download it ({_DOWNLOAD_HINT}) and run again"
        ) from exc


def _load_state(out_dir: Path) -> dict:
    path = out_dir / STATE_FILE
    if not path.is_file():
        return {"archives": {}, "splits": {}}
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"archives": {}, "splits": {}}  # an unreadable cache only costs a re-hash / redo
    state.setdefault("archives", {})
    state.setdefault("splits", {})
    return state


def _save_state(out_dir: Path, state: dict) -> None:
    atomic_write_json(out_dir / STATE_FILE, state)


def _archive_record(path: Path, state: dict, log: Callable[[str], Any], chunk_bytes: int) -> dict:
    """Name, size, md5 and sha256 of an archive, hashed at most once per (size, mtime) thanks to the state cache."""
    stat = path.stat()
    cached = state["archives"].get(path.name)
    if cached and cached.get("size") == stat.st_size and cached.get("mtime_ns") == stat.st_mtime_ns:
        return cached
    log(f"hashing {path} ({stat.st_size / 1e9:.2f} GB, md5 + sha256 in one pass)")
    record = {"file": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
              **hash_archive(path, chunk_bytes=chunk_bytes)}
    state["archives"][path.name] = record
    return record


def _check_md5(path: Path, record: dict, expected_md5: str) -> None:
    if record["md5"] != expected_md5:
        raise ArchiveChecksumError(
            f"archive {path} has md5 {record['md5']}, expected {expected_md5} for the official ILSVRC2012 file: "
            f"it is truncated, corrupt or a different file; re-download it ({_DOWNLOAD_HINT}). "
            f"(To use a file you know to differ, pass verify_md5=False / --no-verify-md5.)"
        )


def _check_devkit_members(archive: Path) -> None:
    with _reading(archive), tarfile.open(archive, "r:*") as tar:
        names = set(tar.getnames())
    missing = [m for m in _DEVKIT_REQUIRED_MEMBERS if m not in names]
    if missing:
        raise WrongArchiveError(
            f"archive {archive} is not the ILSVRC2012 devkit: it lacks {', '.join(missing)}; put the official "
            f"ILSVRC2012_devkit_t12.tar.gz there ({_DOWNLOAD_HINT})"
        )


def _check_train_members(archive: Path, wnids: Sequence[str]) -> None:
    """The train tar must hold exactly one ``<wnid>.tar`` per devkit class, nothing else."""
    with _reading(archive), tarfile.open(archive, "r:*") as tar:
        names = tar.getnames()
    bad = [n for n in names if not _TRAIN_MEMBER.match(n)]
    if bad:
        raise WrongArchiveError(
            f"archive {archive} is not the ILSVRC2012 train archive: its members should all be <wnid>.tar "
            f"(e.g. n01440764.tar), found {bad[:3]}{' …' if len(bad) > 3 else ''}; put the official "
            f"ILSVRC2012_img_train.tar there ({_DOWNLOAD_HINT})"
        )
    found = {_TRAIN_MEMBER.match(n).group(1) for n in names}
    missing = sorted(set(wnids) - found)
    extra = sorted(found - set(wnids))
    if missing or extra:
        raise WrongArchiveError(
            f"archive {archive} does not match the devkit's {len(wnids)} classes (missing {len(missing)}: "
            f"{missing[:3]}, unknown {len(extra)}: {extra[:3]}): it is truncated or a different file; "
            f"re-download it ({_DOWNLOAD_HINT})"
        )


def _count_images(split_folder: Path) -> tuple[dict[str, int], list[str]]:
    """Images per class folder (sorted by wnid) and any loose entries that are not class folders."""
    counts, loose = {}, []
    for entry in sorted(os.scandir(split_folder), key=lambda e: e.name):
        if entry.is_dir():
            counts[entry.name] = sum(1 for f in os.scandir(entry.path) if f.is_file())
        else:
            loose.append(entry.name)
    return counts, loose


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# ------------------------------------------------------------------------------------------------ prepare
def prepare_imagenet(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    splits: Sequence[str] = SPLITS,
    verify_md5: bool = True,
    log: Callable[[str], Any] = print,
    hash_chunk_bytes: int = 16 << 20,
) -> dict:
    """Extract the ILSVRC-2012 archives in ``raw_dir`` into ``out_dir`` (layout in the module docstring) and
    return the manifest (also written atomically to ``out_dir/manifest.json``).

    Resumable: a split already complete is skipped, an interrupted one is redone from scratch; nothing
    half-written is ever left at a final path. ``verify_md5`` compares each archive's md5 with the official one
    (torchvision's ``ARCHIVE_META``); switch it off only for a file known to differ (e.g. tests' fake archives).

    Raises :class:`ArchiveMissingError` (a ``FileNotFoundError``) for a missing ``raw_dir`` or archive, and
    :class:`ArchiveChecksumError`, :class:`CorruptArchiveError`, :class:`WrongArchiveError` or
    :class:`OutputConflictError` (all ``ValueError``) for a bad archive or a conflicting output folder.
    """
    splits = tuple(dict.fromkeys(splits))
    if not splits or any(s not in SPLITS for s in splits):
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {splits!r}")
    raw_dir, out_dir = Path(raw_dir).expanduser(), Path(out_dir).expanduser()
    archives = _find_archives(raw_dir, splits)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _load_state(out_dir)
    todo = _splits_to_do(out_dir, splits, state, log)

    # Hash every archive once (cached by size + mtime) and compare its md5 with the official one.
    records = {}
    for kind, path in archives.items():
        records[kind] = _archive_record(path, state, log, hash_chunk_bytes)
        _save_state(out_dir, state)
        if verify_md5:
            _check_md5(path, records[kind], tv_imagenet.ARCHIVE_META[kind][1])

    # torchvision's parse_* read their archive from `root`: give them a work folder of symlinks to raw_dir.
    work = out_dir / _WORK_FOLDER
    _remove(work)
    work.mkdir()
    try:
        for path in archives.values():
            (work / path.name).symlink_to(path.resolve())
        wnid_to_classes, val_wnids = _parse_devkit(archives["devkit"], work, out_dir, log)
        for split in todo:
            _prepare_split(split, archives[split], work, out_dir, wnid_to_classes, val_wnids, log)
            state["splits"][split] = {"done": True, "archive": archives[split].name,
                                      "archive_sha256": records[split]["sha256"]}
            _save_state(out_dir, state)
    finally:
        _remove(work)

    manifest = _manifest(out_dir, state, wnid_to_classes, raw_dir, splits, verify_md5)
    atomic_write_json(out_dir / MANIFEST_FILE, manifest)
    return manifest


def _find_archives(raw_dir: Path, splits) -> dict[str, Path]:
    """The devkit's and each split's archive in ``raw_dir``; :class:`ArchiveMissingError` naming a missing one."""
    if not raw_dir.is_dir():
        raise ArchiveMissingError(
            f"raw ImageNet folder {raw_dir} does not exist; create it and put the ILSVRC2012 archives in it "
            f"({', '.join(archive_file_names()[k] for k in ('devkit', *splits))}); {_DOWNLOAD_HINT}"
        )
    names = archive_file_names()
    archives = {kind: raw_dir / names[kind] for kind in ("devkit", *splits)}
    for kind, path in archives.items():
        if not path.is_file():
            raise ArchiveMissingError(
                f"archive {path.name} is missing from {raw_dir} (needed for the {kind} "
                f"{'metadata' if kind == 'devkit' else 'split'}); put the file at {path}; {_DOWNLOAD_HINT}"
            )
    return archives


def _splits_to_do(out_dir: Path, splits, state: dict, log) -> list[str]:
    """The splits not yet prepared (a finished one is skipped). A final split folder we did not finish ourselves
    is someone else's: refuse rather than overwrite it."""
    todo = []
    for split in splits:
        final = out_dir / split
        done = state["splits"].get(split, {}).get("done", False)
        if final.exists() and not (done and final.is_dir()):
            if final.is_dir() and not any(final.iterdir()):
                final.rmdir()
            else:
                raise OutputConflictError(
                    f"{final} exists but was not made by prepare_imagenet (or its record is lost); move it away, "
                    f"delete it, or choose another output folder"
                )
        if done and final.is_dir():
            log(f"{split}: already prepared in {final}, skipped")
        else:
            state["splits"].pop(split, None)
            todo.append(split)
    return todo


def _parse_devkit(devkit: Path, work: Path, out_dir: Path, log) -> tuple[dict, list]:
    """torchvision's devkit parsing (``meta.bin`` into ``out_dir``) → (wnid → classes, validation wnids)."""
    _check_devkit_members(devkit)
    log(f"devkit: parsing {devkit.name}")
    try:
        with _extracting(devkit):
            tv_imagenet.parse_devkit_archive(str(work))
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, ImageNetError):
            raise
        raise WrongArchiveError(
            f"archive {devkit} is not a valid ILSVRC2012 devkit (its meta.mat or validation ground truth "
            f"could not be parsed: {type(exc).__name__}: {exc}); re-download it ({_DOWNLOAD_HINT})"
        ) from exc
    os.replace(work / tv_imagenet.META_FILE, out_dir / tv_imagenet.META_FILE)
    return tv_imagenet.load_meta_file(str(out_dir))


def _prepare_split(split: str, archive: Path, work: Path, out_dir: Path, wnid_to_classes: dict,
                   val_wnids: list[str], log: Callable[[str], Any]) -> None:
    """Extract one split into ``out_dir/.partial-<split>`` with torchvision, check it, rename it into place."""
    partial, final = out_dir / f"{_PARTIAL_PREFIX}{split}", out_dir / split
    if partial.exists():
        log(f"{split}: removing the unfinished extraction {partial} of an interrupted run")
        _remove(partial)
    log(f"{split}: extracting {archive.name} into {partial}")
    try:
        if split == "train":
            _check_train_members(archive, sorted(wnid_to_classes))
            with _extracting(archive):
                # `folder` may be absolute: torchvision joins it onto root, and an absolute path wins.
                tv_imagenet.parse_train_archive(str(work), folder=str(partial))
            expected_total = None
        else:
            with _extracting(archive):
                tv_imagenet.parse_val_archive(str(work), wnids=list(val_wnids), folder=str(partial))
            expected_total = len(val_wnids)
        counts, loose = _count_images(partial)
        total = sum(counts.values())
        if loose or (expected_total is not None and total != expected_total):
            raise WrongArchiveError(
                f"archive {archive} gave {total} images in class folders and {len(loose)} loose files, but the "
                f"devkit's ground truth lists {expected_total}: it is truncated or not the ILSVRC2012 {split} "
                f"archive matching the devkit; re-download it ({_DOWNLOAD_HINT})"
            )
        empty = [w for w, n in counts.items() if n == 0]
        if empty:
            raise WrongArchiveError(f"archive {archive} has empty classes {empty[:3]}; re-download it "
                                    f"({_DOWNLOAD_HINT})")
        os.rename(partial, final)
    except BaseException:
        _remove(partial)
        raise
    log(f"{split}: {total} images in {len(counts)} classes → {final}")


def _manifest(out_dir: Path, state: dict, wnid_to_classes: dict, raw_dir: Path, requested: Sequence[str],
              verify_md5: bool) -> dict:
    """Images per class and split (every split prepared in ``out_dir``), class order, archives, provenance."""
    names = archive_file_names()
    split_info, archives = {}, {}
    devkit_record = state["archives"][names["devkit"]]
    archives["devkit"] = {k: devkit_record[k] for k in ("file", "size", "sha256", "md5")}
    for split in SPLITS:
        if not (state["splits"].get(split, {}).get("done") and (out_dir / split).is_dir()):
            continue
        counts, _ = _count_images(out_dir / split)
        split_info[split] = {"total": sum(counts.values()), "num_classes": len(counts), "per_class": counts}
        record = state["archives"].get(state["splits"][split]["archive"])
        if record:
            archives[split] = {k: record[k] for k in ("file", "size", "sha256", "md5")}
    # torchvision's ImageNet (an ImageFolder) numbers classes by sorted wnid.
    classes = [{"index": i, "wnid": wnid, "names": list(wnid_to_classes[wnid])}
               for i, wnid in enumerate(sorted(wnid_to_classes))]
    return {
        "dataset": "ILSVRC-2012 (ImageNet-1k)",
        "layout": "torchvision.datasets.ImageNet(root=<this folder>, split='train'|'val')",
        "splits": split_info,
        "num_classes": len(classes),
        "classes": classes,
        "archives": archives,
        "provenance": provenance({"raw_dir": str(raw_dir), "splits": list(requested), "verify_md5": verify_md5},
                                 inputs={a["file"]: a["sha256"] for a in archives.values()}),
    }


# ------------------------------------------------------------------------------------------------ dataset
def checked_image_loader(path: str) -> Any:
    """torchvision's PIL loader (→ RGB ``PIL.Image``), raising :class:`CorruptImageError` naming the file when it
    cannot be decoded, instead of a bare PIL error deep inside a DataLoader worker."""
    try:
        return pil_loader(path)
    except OSError as exc:  # PIL.UnidentifiedImageError and truncated-file errors are OSErrors
        raise CorruptImageError(
            f"corrupt image {path}: {type(exc).__name__}: {exc}; re-run `spot data imagenet` or remove the file"
        ) from exc


def imagenet_dataset(root: str | os.PathLike, split: str, transform: Callable | None = None):
    """A :class:`torchvision.datasets.ImageNet` over a folder made by :func:`prepare_imagenet`, whose loader raises
    a :class:`CorruptImageError` naming the file for an unreadable image. Never extracts anything itself."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root).expanduser()
    for needed in (root / tv_imagenet.META_FILE, root / split):
        if not needed.exists():
            raise PreparedImageNetMissingError(
                f"{needed} is missing: {root} is not a prepared ImageNet folder for split {split!r}; "
                f"run `spot data imagenet --raw <folder with the ILSVRC2012 archives> --out {root}` first"
            )
    return tv_imagenet.ImageNet(str(root), split=split, transform=transform, loader=checked_image_loader)


# ------------------------------------------------------------------------------------------------ CLI
def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``spot data imagenet`` options to ``parser``."""
    parser.add_argument("--raw", metavar="DIR", required=True,
                        help="folder holding ILSVRC2012_devkit_t12.tar.gz, ILSVRC2012_img_val.tar and "
                             "ILSVRC2012_img_train.tar (from image-net.org)")
    parser.add_argument("--out", metavar="DIR", required=True,
                        help="output folder (meta.bin, train/, val/, manifest.json)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                        help="splits to prepare (default: train val)")
    parser.add_argument("--no-verify-md5", dest="verify_md5", action="store_false",
                        help="do not compare the archives' md5 with the official ones")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`prepare_imagenet` from parsed ``spot data imagenet`` arguments; print a summary; exit status."""
    manifest = prepare_imagenet(args.raw, args.out, splits=args.splits, verify_md5=args.verify_md5)
    for split, info in manifest["splits"].items():
        print(f"{split}: {info['total']} images in {info['num_classes']} classes")
    print(f"manifest: {Path(args.out) / MANIFEST_FILE}")
    return 0
