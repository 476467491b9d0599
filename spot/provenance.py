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
import subprocess
import tempfile
from pathlib import Path

__all__ = ["code_version", "software_versions", "device_description", "provenance", "sha256_file",
           "atomic_output", "atomic_write_text", "atomic_write_json"]


def code_version() -> dict:
    """The package version and, when run from a git checkout, its commit and whether the tree has local changes."""
    from ._version import __version__

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


@contextlib.contextmanager
def atomic_output(path, suffix: str = ".tmp"):
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends without an error,
    removed otherwise — so ``path`` is never half-written. ``suffix``: the temporary file's ending, for writers that
    read the format from it (``".tmp.npz"``, ``".tmp.pdf"``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place (never a half-written file)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
