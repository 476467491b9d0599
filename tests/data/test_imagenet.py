"""spot.data.imagenet on tiny fake ILSVRC-2012 archives built here in the real layout (CPU, a few seconds)."""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torchvision.datasets.imagenet as tv_imagenet
from PIL import Image

from spot.data import imagenet as inet

# ILSVRC2012_ID → (wnid, words); three leaves and one non-leaf parent (which torchvision must drop).
LEAVES = {1: ("n01440764", "tench, Tinca tinca"), 2: ("n01443537", "goldfish, Carassius auratus"),
          3: ("n01484850", "great white shark, white shark")}
PARENT = (4, "n01439121", "cyprinid")
TRAIN_PER_CLASS = {"n01440764": 2, "n01443537": 3, "n01484850": 2}
VAL_GROUND_TRUTH = [3, 1, 2, 1, 3, 3]  # ILSVRC2012_ID of val image 1, 2, …


def _jpeg_bytes(seed: int, size=(24, 20)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _meta_mat_bytes(per_class=None) -> bytes:
    per_class = per_class or TRAIN_PER_CLASS
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    synsets = np.zeros((len(LEAVES) + 1, 1), dtype=[(f, "O") for f in fields])
    for row, (ilsvrc_id, (wnid, words)) in enumerate(LEAVES.items()):
        synsets[row, 0] = (ilsvrc_id, wnid, words, f"a fish ({wnid})", 0, np.zeros((0,)), 0,
                           per_class[wnid])
    pid, pwnid, pwords = PARENT
    synsets[len(LEAVES), 0] = (pid, pwnid, pwords, "a family of fish", 3, np.array(list(LEAVES), dtype=float), 1, 0)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": synsets})
    return buf.getvalue()


def make_devkit(path: Path, *, with_meta: bool = True, ground_truth=VAL_GROUND_TRUTH, per_class=None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if with_meta:
            _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", _meta_mat_bytes(per_class))
        _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
             "".join(f"{i}\n" for i in ground_truth).encode())
    return path


def make_train(path: Path, *, member_suffix: str = ".tar", per_class=None) -> Path:
    with tarfile.open(path, "w") as outer:
        for c, (wnid, n) in enumerate((per_class or TRAIN_PER_CLASS).items()):
            inner_buf = io.BytesIO()
            with tarfile.open(fileobj=inner_buf, mode="w") as inner:
                for k in range(n):
                    _add(inner, f"{wnid}_{k + 1}.JPEG", _jpeg_bytes(100 * c + k))
            _add(outer, wnid + member_suffix, inner_buf.getvalue())
    return path


def make_val(path: Path, n_images: int = len(VAL_GROUND_TRUTH)) -> Path:
    with tarfile.open(path, "w") as tar:
        for i in range(1, n_images + 1):
            _add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", _jpeg_bytes(1000 + i, size=(40, 30)))
    return path


@pytest.fixture
def raw(tmp_path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    make_devkit(raw / "ILSVRC2012_devkit_t12.tar.gz")
    make_train(raw / "ILSVRC2012_img_train.tar")
    make_val(raw / "ILSVRC2012_img_val.tar")
    return raw


def prepare(raw, out, **kw):
    return inet.prepare_imagenet(raw, out, verify_md5=False, log=lambda msg: None, **kw)


def _no_final_split_folders(out: Path) -> bool:
    return not any((out / s).exists() for s in ("train", "val")) and not list(out.glob(".partial-*"))


def test_layout_counts_and_manifest(raw, tmp_path):
    out = tmp_path / "out"
    manifest = prepare(raw, out)
    assert (out / "meta.bin").is_file()
    for wnid, n in TRAIN_PER_CLASS.items():
        assert sorted(p.name for p in (out / "train" / wnid).iterdir()) == [f"{wnid}_{k}.JPEG" for k in range(1, n + 1)]
    val_expected = {LEAVES[i][0]: VAL_GROUND_TRUTH.count(i) for i in LEAVES}
    assert {w: len(list((out / "val" / w).iterdir())) for w in val_expected} == val_expected
    assert (out / "val" / "n01484850" / "ILSVRC2012_val_00000001.JPEG").is_file()  # ground truth 3 → great white
    assert not list(out.glob(".partial-*")) and not (out / ".work").exists()

    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["splits"] == manifest["splits"]
    assert manifest["splits"]["train"] == {"total": 7, "num_classes": 3, "per_class": TRAIN_PER_CLASS}
    assert manifest["splits"]["val"]["per_class"] == val_expected and manifest["splits"]["val"]["total"] == 6
    assert [c["wnid"] for c in manifest["classes"]] == sorted(w for w, _ in LEAVES.values())  # parent excluded
    assert manifest["classes"][0] == {"index": 0, "wnid": "n01440764", "names": ["tench", "Tinca tinca"]}
    for kind, name in inet.archive_file_names().items():
        data = (raw / name).read_bytes()
        rec = manifest["archives"][kind]
        assert rec["file"] == name and rec["size"] == len(data)
        assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["md5"] == hashlib.md5(data).hexdigest()
    assert "code" in manifest["provenance"] and manifest["provenance"]["inputs"]


def test_dataset_loads_items_with_torchvision_labels(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out)
    ds = inet.imagenet_dataset(out, "val")
    assert len(ds) == 6 and ds.wnids == sorted(TRAIN_PER_CLASS)
    path, label = ds.samples[0]
    image, target = ds[0]
    assert target == label == ds.wnid_to_idx[Path(path).parent.name]
    assert image.size == (40, 30) and image.mode == "RGB"
    plain = tv_imagenet.ImageNet(str(out), split="train")  # torchvision's own class reads the layout as is
    assert len(plain) == 7 and plain.classes[0] == ("tench", "Tinca tinca")
    with pytest.raises(inet.PreparedImageNetMissingError, match="spot data imagenet"):
        inet.imagenet_dataset(tmp_path / "nowhere", "val")


def test_corrupt_image_error_names_the_file(raw, tmp_path):
    out = tmp_path / "out"
    prepare(raw, out, splits=("val",))
    ds = inet.imagenet_dataset(out, "val")
    bad = Path(ds.samples[2][0])
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(inet.CorruptImageError, match=f"corrupt image {bad}.*re-run `spot data imagenet`"):
        ds[2]
    truncated = Path(ds.samples[3][0])
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match=str(truncated)):
        ds[3]


def test_verify_md5_rejects_non_official_archives(raw, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(inet.ArchiveChecksumError, match=r"ILSVRC2012_devkit_t12\.tar\.gz has md5 [0-9a-f]{32}, "
                                                        r"expected fa75699e90414af021442c21a62c3abf.*re-download"):
        inet.prepare_imagenet(raw, out, verify_md5=True, log=lambda m: None)
    assert _no_final_split_folders(out) and not (out / "meta.bin").exists()


def test_resume_skips_finished_split_and_hashes_once(raw, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare(raw, out)
    train_stat = (out / "train").stat()
    import shutil
    shutil.rmtree(out / "val")

    def must_not_run(*a, **k):
        raise AssertionError("called on resume")

    monkeypatch.setattr(tv_imagenet, "parse_train_archive", must_not_run)
    monkeypatch.setattr(inet, "hash_archive", must_not_run)  # sizes + mtimes unchanged → cached hashes
    manifest = prepare(raw, out)
    assert (out / "train").stat().st_ino == train_stat.st_ino
    assert (out / "train").stat().st_mtime_ns == train_stat.st_mtime_ns
    assert manifest["splits"]["val"]["total"] == 6 and manifest["splits"]["train"]["total"] == 7


def test_interrupted_split_leaves_no_final_folder_and_is_redone(raw, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_parse_val = tv_imagenet.parse_val_archive

    def dies_midway(root, file=None, wnids=None, folder="val"):
        real_parse_val(root, file, wnids[:3], folder)  # half the images moved into class folders …
        raise KeyboardInterrupt  # … then the run is killed

    monkeypatch.setattr(tv_imagenet, "parse_val_archive", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        prepare(raw, out, splits=("val",))
    assert _no_final_split_folders(out)
    # A hard kill would leave the partial folder behind: the next run must clear and redo it.
    (out / ".partial-val" / "junk").mkdir(parents=True)
    monkeypatch.setattr(tv_imagenet, "parse_val_archive", real_parse_val)
    manifest = prepare(raw, out, splits=("val",))
    assert manifest["splits"]["val"]["total"] == 6 and not (out / ".partial-val").exists()
    assert "train" not in manifest["splits"]


def test_missing_raw_dir_and_archive(raw, tmp_path):
    with pytest.raises(inet.ArchiveMissingError, match="does not exist"):
        prepare(tmp_path / "absent", tmp_path / "out")
    (raw / "ILSVRC2012_img_train.tar").unlink()
    with pytest.raises(FileNotFoundError, match=r"ILSVRC2012_img_train\.tar is missing.*image-net\.org"):
        prepare(raw, tmp_path / "out")
    manifest = prepare(raw, tmp_path / "out", splits=("val",))  # train tar only needed for the train split
    assert list(manifest["splits"]) == ["val"]


@pytest.mark.parametrize("name, splits", [("ILSVRC2012_img_val.tar", ("val",)),
                                          ("ILSVRC2012_img_train.tar", ("train",)),
                                          ("ILSVRC2012_devkit_t12.tar.gz", ("train", "val"))])
def test_truncated_archive(raw, tmp_path, name, splits):
    data = (raw / name).read_bytes()
    (raw / name).write_bytes(data[: len(data) // 2 + 100])  # + 100: mid-member, not on a 512-byte boundary
    out = tmp_path / "out"
    with pytest.raises(inet.ImageNetError, match=rf"{name}.*(truncated|corrupt).*re-download"):
        prepare(raw, out, splits=splits)
    assert _no_final_split_folders(out) and not (out / ".work").exists()


def test_wrong_archives(raw, tmp_path):
    out = tmp_path / "out"
    make_devkit(raw / "ILSVRC2012_devkit_t12.tar.gz", with_meta=False)
    with pytest.raises(inet.WrongArchiveError, match=r"not the ILSVRC2012 devkit.*meta\.mat"):
        prepare(raw, out)
    assert _no_final_split_folders(out) and not (out / "meta.bin").exists()

    make_devkit(raw / "ILSVRC2012_devkit_t12.tar.gz")
    make_train(raw / "ILSVRC2012_img_train.tar", member_suffix=".zip")
    with pytest.raises(inet.WrongArchiveError, match=r"members should all be <wnid>\.tar"):
        prepare(raw, out)
    assert _no_final_split_folders(out)

    make_val(raw / "ILSVRC2012_img_val.tar", n_images=len(VAL_GROUND_TRUTH) - 2)
    with pytest.raises(inet.WrongArchiveError, match=r"gave 4 images .* lists 6"):
        prepare(raw, out, splits=("val",))
    assert _no_final_split_folders(out)


def test_unrelated_output_folder_is_not_overwritten(raw, tmp_path):
    out = tmp_path / "out"
    (out / "val").mkdir(parents=True)
    (out / "val" / "precious.txt").write_text("mine")
    with pytest.raises(inet.OutputConflictError, match=r"val exists but was not made by prepare_imagenet"):
        prepare(raw, out, splits=("val",))
    assert (out / "val" / "precious.txt").read_text() == "mine"


def test_cli_hook(raw, tmp_path, capsys):
    parser = inet.configure_parser(argparse.ArgumentParser())
    args = parser.parse_args(["--raw", str(raw), "--out", str(tmp_path / "out"), "--splits", "val",
                              "--no-verify-md5"])
    assert args.verify_md5 is False and args.splits == ["val"]
    assert inet.run_from_args(args) == 0
    assert "val: 6 images in 3 classes" in capsys.readouterr().out
    assert parser.parse_args(["--raw", "r", "--out", "o"]).splits == ["train", "val"]


def _escaping_archive(raw: Path, kind: str) -> tuple[str, tuple]:
    """An archive (which, splits) that holds, besides its real members, one escaping the extraction folder: a
    ``../`` path, a symlink out of it with a file written through it, or a ``../../`` path in a nested class tar."""
    if kind == "nested":
        train = raw / "ILSVRC2012_img_train.tar"
        with tarfile.open(train, "w") as outer:
            for c, (wnid, n) in enumerate(TRAIN_PER_CLASS.items()):
                inner_buf = io.BytesIO()
                with tarfile.open(fileobj=inner_buf, mode="w") as inner:
                    for k in range(n):
                        _add(inner, f"{wnid}_{k + 1}.JPEG", _jpeg_bytes(100 * c + k))
                    _add(inner, "../../evil", b"written outside")  # from out/train/<wnid>/ to out/evil
                _add(outer, wnid + ".tar", inner_buf.getvalue())
        return train.name, ("train",)
    with tarfile.open(raw / "ILSVRC2012_img_val.tar", "a") as tar:
        if kind == "dotdot":
            _add(tar, "../evil", b"written outside")  # from out/.partial-val/ to out/evil
        else:
            link = tarfile.TarInfo("link")
            link.type, link.linkname = tarfile.SYMTYPE, "../../outside"  # out/.partial-val/link → outside
            tar.addfile(link)
            _add(tar, "link/evil", b"written outside")
    return "ILSVRC2012_img_val.tar", ("val",)


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "nested"])
def test_members_escaping_the_extraction_folder_are_refused_and_not_written(raw, tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    default_filter = tarfile.TarFile.extraction_filter
    name, splits = _escaping_archive(raw, kind)
    out = tmp_path / "out"
    with pytest.raises(inet.UnsafeArchiveError, match=rf"{name} holds a member that would be written outside.*"
                                                      r"re-download"):
        prepare(raw, out, splits=splits)  # verify_md5=False: any file named like the archive is taken for it
    assert not list(outside.iterdir()) and not (out / "evil").exists() and not (tmp_path / "evil").exists()
    assert _no_final_split_folders(out) and not (out / ".work").exists()
    assert tarfile.TarFile.extraction_filter is default_filter  # the process-wide default restored
