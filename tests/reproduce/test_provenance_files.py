"""The atomic writers of spot.provenance: files get the umask's mode (not mkstemp's 0600), and temporaries a killed
write left behind are swept by the next write of the same file once stale, never while fresh."""
import os
import stat
import time

import pytest

from spot import provenance
from spot.provenance import atomic_output, atomic_write_json, atomic_write_text


@pytest.fixture
def umask():
    """``os.umask``, to set the umask inside the test (022 to start with); the previous umask is restored after it."""
    saved = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(saved)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    text = atomic_write_text(tmp_path / "a.csv", "a,b\n1,2\n")
    data = atomic_write_json(tmp_path / "sub" / "a.json", {"x": 1})
    with atomic_output(tmp_path / "a.npz", suffix=".tmp.npz") as tmp:
        assert mode(tmp) == expected  # already while it is written
        tmp.write_bytes(b"PK")
    assert [mode(p) for p in (text, data, tmp_path / "a.npz")] == [expected] * 3
    assert text.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.npz", "sub"]  # no temporary left


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "a.csv") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def _leftover(folder, name, age_s):
    path = folder / name
    path.write_text("half-written")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_stale_temporaries_are_swept_fresh_ones_kept(tmp_path):
    stale = provenance.STALE_TEMP_SECONDS + 60
    old = _leftover(tmp_path, ".a.csv.k3_x9q0z.tmp", stale)  # a killed atomic_write_text
    old_npz = _leftover(tmp_path, ".a.csv.ab12cd34.tmp.npz", stale)  # a killed atomic_output(suffix=".tmp.npz")
    fresh = _leftover(tmp_path, ".a.csv.zz99yy88.tmp", 60)  # another process may be writing it now
    other = _leftover(tmp_path, ".b.csv.k3_x9q0z.tmp", stale)  # another file's: its own next write sweeps it
    longer = _leftover(tmp_path, ".a.csv.gz.k3_x9q0z.tmp", stale)  # a.csv.gz's, not a.csv's
    mine = _leftover(tmp_path, ".a.csv.notes", stale)  # not the writer's pattern
    atomic_write_text(tmp_path / "a.csv", "x\n")
    assert not old.exists() and not old_npz.exists()
    assert fresh.exists() and other.exists() and longer.exists() and mine.exists()
    assert (tmp_path / "a.csv").read_text() == "x\n"


def test_the_sweep_spares_folders_and_links(tmp_path):
    stale = provenance.STALE_TEMP_SECONDS + 60
    folder = tmp_path / ".a.csv.abcdefgh.tmp"
    folder.mkdir()
    target = _leftover(tmp_path, "target", stale)
    link = tmp_path / ".a.csv.12345678.tmp"
    link.symlink_to(target)
    os.utime(link, (time.time() - stale,) * 2, follow_symlinks=False)
    atomic_write_text(tmp_path / "a.csv", "x\n")
    assert folder.is_dir() and link.is_symlink() and target.exists()
