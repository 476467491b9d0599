"""Provenance records and atomic writes: every result file says where it came from, and is never half-written.

Importable without torch (the workflow's table registry uses it while building the DAG): torch is imported by the
functions that describe the software and the device.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import re
import subprocess
import time
from pathlib import Path
from ._version import __version__

__all__ = ["code_version", "software_versions", "device_description", "provenance", "sha256_file",
           "atomic_output", "atomic_write_text", "atomic_write_json"]


def code_version() -> dict:
    """The package version and, when run from a git checkout, its commit and whether the tree has local changes."""

    root = Path(__file__).resolve().parent.parent
    info = {"package": __version__}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        info.update(git_commit=commit, git_dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):
        info.update(git_commit=None, git_dirty=None)
    return info


def software_versions() -> dict:
    import numpy
    import timm
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "cuda": torch.version.cuda, "platform": platform.platform()}


def device_description(device=None) -> dict:
    import torch

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "count": torch.cuda.device_count()}
    return {"type": device.type, "name": platform.processor() or platform.machine(), **_cpu_model(),
            "threads": torch.get_num_threads()}


def _cpu_model() -> dict:
    """The CPU's model and widest vector extension (from /proc/cpuinfo, where there is one): float results of the
    same code differ between CPU generations (e.g. AVX2 vs AVX-512 kernels), so a result names the one it ran on."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {}


def parse_cpuinfo(text: str) -> dict:
    """``{"cpu": "<model name> (family F, model M)", "isa": widest vector extension}`` from /proc/cpuinfo text."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
        if not line.strip() and fields:
            break  # the first processor's block
    flags = set(fields.get("flags", "").split())
    isa = next((f for f in ("avx512f", "avx2", "avx", "neon", "asimd") if f in flags), None)
    out = {"cpu": f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, "
                  f"model {fields.get('model', '?')})"}
    if isa:
        out["isa"] = isa
    return out


def provenance(config: dict | None = None, *, seed=None, device=None, inputs: dict | None = None) -> dict:
    """A provenance block: code version, config, seed, inputs' checksums, software, device and time (UTC)."""
    return {
        "code": code_version(),
        "config": config or {},
        "seed": seed,
        "inputs": inputs or {},
        "software": software_versions(),
        "device": device_description(device),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: a temporary of the atomic writer (``.{name}.XXXXXXXX.tmp…`` beside its file) whose last write is older than this
#: was left by a killed write: the next write of the same file removes it
STALE_TEMP_SECONDS = 30 * 60
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # tempfile.mkstemp's alphabet: earlier temporaries match too
_RANDOM = random.SystemRandom()


def _temp_pattern(name: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(name)}\.[{_TEMP_CHARS}]{{8}}\.tmp(\.[A-Za-z0-9]+)?")


def _sweep_stale_temps(path: Path) -> None:
    """Remove the atomic writer's temporaries of ``path`` (``.{name}.`` + 8 random characters + ``.tmp``, optionally
    ``.ext``, in the same folder) whose last modification is older than ``STALE_TEMP_SECONDS``; a younger one may be
    another process's write in progress and is kept. Best effort: a temporary that vanishes or cannot be removed is
    left alone."""
    pattern, now = _temp_pattern(path.name), time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(f".{path.name}.") or not pattern.fullmatch(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime \
                    > STALE_TEMP_SECONDS:
                os.unlink(entry.path)
        except OSError:
            pass


def _create_temp(path: Path, suffix: str) -> Path:
    """A new empty file ``.{name}.XXXXXXXX{suffix}`` beside ``path``, created (exclusively) with mode 0o666 less the
    process's umask — the mode any ``open(path, "w")`` would give it (and a folder's default ACL applies as usual);
    ``tempfile.mkstemp`` would make it 0o600, unreadable to the group and others whatever the umask says."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(1000):
        tmp = path.parent / f".{path.name}.{''.join(_RANDOM.choice(_TEMP_CHARS) for _ in range(8))}{suffix}"
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_output(path, suffix: str = ".tmp"):
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends without an error,
    removed otherwise — so ``path`` is never half-written. ``suffix``: the temporary file's ending, for writers that
    read the format from it (``".tmp.npz"``, ``".tmp.pdf"``).

    The file gets the mode the umask gives a new file (0o644 under umask 022, 0o640 under 027), as with a plain
    ``open``. Temporaries a killed write left behind (``.{name}.XXXXXXXX.tmp…`` in the same folder) are removed by the
    next write of the same ``path`` once their last modification is older than ``STALE_TEMP_SECONDS`` (30 minutes);
    younger ones are kept, since another process may still be writing them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(path)
    tmp = _create_temp(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place (never a half-written file)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
