"""Where Fashion-MNIST's four IDX files are, and how to get them — standard library only.

The README's set-up commands run this file *before* anything is installed (``python3 spot/data/fmnist_files.py
--install``), so a machine without the data learns in seconds what to do instead of after a 5 GB install::

    python3 spot/data/fmnist_files.py                # is it there? (exit 0 and the folder, else 2 and what to run)
    python3 spot/data/fmnist_files.py --install      # … and install Debian's dataset-fashion-mnist when missing
    python3 spot/data/fmnist_files.py --fmnist DIR   # check a folder of your own

Installing needs root or password-less sudo and ``apt-get`` (Debian/Ubuntu); otherwise the message names the
command to run as root, the ``data.fmnist_dir`` alternative and torchvision's download. ``spot.data.fmnist`` reads
the files through :func:`find_fmnist` of this module, so the two can never disagree on where the data is.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEFAULT_FMNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
APT_INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE]
APT_UPDATE = ["apt-get", "update"]


class FashionMNISTNotFound(FileNotFoundError):
    """The four IDX files are in none of the folders looked at (the message says how to get them)."""


def idx_path(directory: Path, name: str) -> Path | None:
    """The file ``name`` (gzipped or not) in ``directory`` or in torchvision's ``FashionMNIST/raw`` below it."""
    for candidate in (directory / f"{name}.gz", directory / name, directory / "FashionMNIST" / "raw" / f"{name}.gz",
                      directory / "FashionMNIST" / "raw" / name):
        if candidate.is_file():
            return candidate
    return None


def how_to_get(where: str) -> str:
    names = ", ".join(f"{n}.gz" for pair in IDX_FILES.values() for n in pair)
    return (f"Fashion-MNIST not found in {where} (need {names}). Install it with "
            f"`apt-get update && apt-get install -y {DEBIAN_PACKAGE}` as root (Debian/Ubuntu; or run "
            f"`python3 spot/data/fmnist_files.py --install`, which does that when it may), or put the four files in a "
            f"folder DIR and pass it: `snakemake --cores 2 --config 'data={{fmnist_dir: DIR}}'` for the workflow, "
            f"`spot data fmnist --fmnist DIR` by hand; on a machine with internet `spot data fmnist --download "
            f"--fmnist DIR` fetches them with torchvision.")


def find_fmnist(directory=None) -> Path:
    """The folder holding the four IDX files: ``directory``, or Debian's folder; else :class:`FashionMNISTNotFound`."""
    candidates = [Path(directory)] if directory else [Path(d) for d in DEFAULT_FMNIST_DIRS]
    for d in candidates:
        if all(idx_path(d, name) is not None for pair in IDX_FILES.values() for name in pair):
            return d
    raise FashionMNISTNotFound(how_to_get(str(candidates[0]) if directory else " or ".join(DEFAULT_FMNIST_DIRS)))


def install_prefix() -> list[str] | None:
    """``[]`` as root, ``["sudo", "-n"]`` with password-less sudo, ``None`` when this user cannot install packages
    (or there is no ``apt-get``)."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def install_fmnist(prefix: list[str], run=subprocess.run) -> None:
    """``apt-get install`` the Debian package (after ``apt-get update`` if the package lists do not know it yet)."""
    if run(prefix + APT_INSTALL).returncode != 0:
        print(f"{DEBIAN_PACKAGE} is not in the package lists yet: running apt-get update", file=sys.stderr)
        if run(prefix + APT_UPDATE).returncode != 0 or run(prefix + APT_INSTALL).returncode != 0:
            raise RuntimeError(f"installing {DEBIAN_PACKAGE} failed (apt-get's messages above); "
                               f"run `apt-get update && apt-get install -y {DEBIAN_PACKAGE}` as root and retry")


def ensure_fmnist(directory=None, install: bool = False, prefix=install_prefix, run=subprocess.run) -> Path:
    """The Fashion-MNIST folder; with ``install`` the Debian package is installed first when it is missing and this
    user may (a user's own ``directory`` is never installed into). Raises :class:`FashionMNISTNotFound` otherwise."""
    try:
        return find_fmnist(directory)
    except FashionMNISTNotFound as err:
        if not install or directory is not None:
            raise
        how = prefix()
        if how is None:
            raise FashionMNISTNotFound(f"{err} This user cannot install packages here (not root, no password-less "
                                       f"sudo, or no apt-get), so nothing was installed.") from None
    install_fmnist(how, run)
    return find_fmnist()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fmnist", default=None, help="a folder of your own with the four IDX files")
    p.add_argument("--install", action="store_true", help=f"install Debian's {DEBIAN_PACKAGE} when it is missing")
    args = p.parse_args(argv)
    try:
        folder = ensure_fmnist(args.fmnist, install=args.install)
    except (FashionMNISTNotFound, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Fashion-MNIST: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
