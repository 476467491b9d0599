"""Every Python block of the README runs as written. A file a block names (weights a user would download) gets a
small stand-in of the right layout in the block's working folder; nothing else is changed."""
import re
import shutil
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from test_official import release_state

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def _release_checkpoint(path):
    torch.save(release_state(depth=2, D=128, k=16, classes=10), path)


def _vit_tiny_weights(path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))


STAND_INS = {"spot_1k_b16.pth": _release_checkpoint, "vit_tiny.safetensors": _vit_tiny_weights}


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, one_thread):
    block = BLOCKS[index]
    for name, make in STAND_INS.items():
        if f'"{name}"' in block:
            make(tmp_path / name)
    if "torch.hub.load" in block:
        shutil.copy(ROOT / "hubconf.py", tmp_path / "hubconf.py")  # "." is the repository in the README
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(block, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_the_readme_states_the_published_findings_table(tmp_path):
    """The README's findings section is the published findings table's verdicts (generated, not typed): a changed
    verdict in the reference makes the README out of date until update_readme is run."""
    import pandas as pd

    from spot.paper.findings import update_readme

    published = ROOT / "reference" / "embedded" / "paper_figures" / "embedded" / "findings.csv"
    reference = published if published.is_file() else None  # none published: the README must say so, not guess
    assert update_readme(ROOT / "README.md", reference, check=True), \
        "README findings section out of date: python -c 'from spot.paper.findings import update_readme; " \
        "update_readme(\"README.md\", \"reference/embedded/paper_figures/embedded/findings.csv\")'"
    flipped = pd.DataFrame([{"Finding": "f", "Source": "ours: this project", "Scope": "all", "Verdict": "holds",
                             "Estimate (points)": None}])
    if reference is not None:
        flipped = pd.read_csv(published)
        flipped.loc[0, "Verdict"] = "contradicted" if flipped.loc[0, "Verdict"] != "contradicted" else "holds"
    flipped.to_csv(tmp_path / "findings.csv", index=False)
    assert not update_readme(ROOT / "README.md", tmp_path / "findings.csv", check=True)


def test_every_pointer_to_a_readme_section_finds_it():
    """A comment or docstring saying README "X" names a heading or a bold paragraph lead that starts with X."""
    text = (ROOT / "README.md").read_text()
    anchors = [m.group(1) for m in re.finditer(r"^#+ (.+)$", text, re.M)]
    anchors += [m.group(1) for m in re.finditer(r"^\*\*(.+?)\*\*", text, re.M)]
    files = [ROOT / "config.yaml", ROOT / "Snakefile", *(ROOT / "config").glob("*.yaml"),
             *(ROOT / "workflow").rglob("*.smk"), *(ROOT / "workflow").rglob("*.yaml"), *(ROOT / "spot").rglob("*.py")]
    pointers = [(f.relative_to(ROOT), m.group(1)) for f in files
                for m in re.finditer(r'README "([^"]+)"', re.sub(r"\n\s*#\s*", " ", f.read_text()))]
    assert len(pointers) >= 5
    lost = [(str(f), name) for f, name in pointers if not any(a.startswith(name) for a in anchors)]
    assert not lost, lost
