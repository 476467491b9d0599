"""Finding and installing Fashion-MNIST before anything else is installed (spot/data/fmnist_files.py)."""
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_block_fmnist

from spot.data import fmnist_files
from spot.data.fmnist_files import FashionMNISTNotFound, ensure_fmnist

SCRIPT = Path(fmnist_files.__file__)


class FakeApt:
    """Records the commands it is given; ``apt-get install`` "installs" the files into ``target`` unless the package
    lists are still empty (``needs_update``), as on a fresh Debian machine."""

    def __init__(self, target: Path, needs_update: bool):
        self.target, self.needs_update, self.calls = target, needs_update, []

    def __call__(self, command):
        self.calls.append(command)
        if command[-2:] == ["apt-get", "update"]:
            self.needs_update = False
        elif "install" in command and not self.needs_update:
            write_block_fmnist(self.target)
        return subprocess.CompletedProcess(command, 0 if not self.needs_update else 100)


@pytest.fixture
def debian_dir(tmp_path, monkeypatch):
    target = tmp_path / "usr-share-datasets-fashion-mnist"
    target.mkdir()
    monkeypatch.setattr(fmnist_files, "DEFAULT_FMNIST_DIRS", (str(target),))
    return target


def test_found_in_a_given_folder_without_installing(tmp_path):
    folder = write_block_fmnist(tmp_path)
    assert ensure_fmnist(folder, install=True, prefix=pytest.fail, run=pytest.fail) == folder


def test_missing_without_install_names_every_way_to_get_it(debian_dir):
    with pytest.raises(FashionMNISTNotFound) as err:
        ensure_fmnist()
    message = str(err.value)
    assert "apt-get update && apt-get install -y dataset-fashion-mnist" in message
    assert "--config 'data={fmnist_dir: DIR}'" in message and "--fmnist DIR" in message and "--download" in message


def test_a_user_who_cannot_install_is_told_so_and_nothing_runs(debian_dir):
    with pytest.raises(FashionMNISTNotFound, match="cannot install packages here"):
        ensure_fmnist(install=True, prefix=lambda: None, run=pytest.fail)


@pytest.mark.parametrize("needs_update", [False, True])
def test_root_installs_the_debian_package(debian_dir, needs_update):
    apt = FakeApt(debian_dir, needs_update)
    assert ensure_fmnist(install=True, prefix=lambda: ["sudo", "-n"], run=apt) == debian_dir
    install = ["sudo", "-n", "apt-get", "install", "-y", "--no-install-recommends", "dataset-fashion-mnist"]
    assert apt.calls == ([install, ["sudo", "-n", "apt-get", "update"], install] if needs_update else [install])


def test_a_failed_install_says_what_to_run(debian_dir):
    with pytest.raises(RuntimeError, match="apt-get update && apt-get install -y dataset-fashion-mnist"):
        ensure_fmnist(install=True, prefix=lambda: [], run=lambda c: subprocess.CompletedProcess(c, 100))


def test_a_users_own_folder_is_never_installed_into(tmp_path):
    with pytest.raises(FashionMNISTNotFound, match=str(tmp_path / "mine")):
        ensure_fmnist(tmp_path / "mine", install=True, prefix=pytest.fail, run=pytest.fail)


def test_the_script_runs_on_a_bare_python(tmp_path):
    """`python3 -S` has no site-packages: the README runs this file before anything (torch …) is installed."""
    (tmp_path / "have").mkdir()
    folder = write_block_fmnist(tmp_path / "have")
    ok = subprocess.run([sys.executable, "-S", str(SCRIPT), "--fmnist", str(folder)], capture_output=True, text=True)
    assert ok.returncode == 0 and f"Fashion-MNIST: {folder}" in ok.stdout, ok.stderr
    missing = subprocess.run([sys.executable, "-S", str(SCRIPT), "--fmnist", str(tmp_path / "none"), "--install"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "error: Fashion-MNIST not found" in missing.stderr
