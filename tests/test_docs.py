"""The README and the documentation site: every Python block of either runs as written (a file a block names — weights
a user would download — gets a small stand-in of the right layout in the block's working folder; nothing else is
changed); the site builds with warnings as errors and every page renders in headless Chromium with every link
resolving; pointers from code and configs to a section find it; the findings section is the published table's."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from weights.test_official import release_state

from helpers import require

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page.relative_to(ROOT), block) for page in PAGES
          for block in re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)]


def _release_checkpoint(path):
    torch.save(release_state(depth=2, D=128, k=16, classes=10), path)


def _vit_tiny_weights(path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))


STAND_INS = {"spot_1k_b16.pth": _release_checkpoint, "vit_tiny.safetensors": _vit_tiny_weights}


def test_the_readme_and_the_extending_guide_have_python_blocks():
    pages = [str(page) for page, _ in BLOCKS]
    assert pages.count("README.md") >= 1 and pages.count("docs/extending.md") == 4 and len(BLOCKS) >= 8


@pytest.fixture
def registries():
    """Every registry as it is, restored after the block: a guide's example registers a prior, a method, …"""
    from spot.experiments import protocol as experiment
    from spot.weights.backbones import BACKBONES
    from spot.paper.registry import ARTIFACTS
    from spot.core.placement import PLACEMENTS
    from spot.core.pruning.catalog import METHOD_SETTINGS
    from spot.core.pruning.methods import PRUNING_METHODS

    kept = [(r, dict(r)) for r in (BACKBONES, ARTIFACTS, PLACEMENTS, METHOD_SETTINGS, PRUNING_METHODS,
                                   experiment.RESULT_KINDS, experiment.load_experiments())]
    yield
    for registry, before in kept:
        registry.clear()
        registry.update(before)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{p}:{i}" for i, (p, _) in enumerate(BLOCKS)])
def test_python_block_runs(index, tmp_path, monkeypatch, one_thread, registries):
    page, block = BLOCKS[index]
    for name, make in STAND_INS.items():
        if f'"{name}"' in block:
            make(tmp_path / name)
    if "torch.hub.load" in block:
        shutil.copy(ROOT / "hubconf.py", tmp_path / "hubconf.py")  # "." is the repository in the README
    for preset in ("config.yaml", "config"):  # the guides read the presets from the repository root
        (tmp_path / preset).symlink_to(ROOT / preset)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(block, f"{page} python block {index}", "exec"), {"__name__": "__docs__"})


def test_the_readme_states_the_published_findings_table(tmp_path):
    """The README's findings section is the published findings table's verdicts (generated, not typed): a changed
    verdict in the reference makes the README out of date until update_readme is run."""
    import pandas as pd

    from spot.paper.findings import update_readme

    published = ROOT / "reference" / "embedded" / "paper_figures" / "embedded" / "findings.csv"
    reference = published if published.is_file() else None  # none published: the README must say so, not guess
    for page in ("README.md", "docs/results.md"):
        assert update_readme(ROOT / page, reference, check=True), \
            f"{page}: findings section out of date: python -c 'from spot.paper.findings import update_readme; " \
            f"update_readme(\"{page}\", \"reference/embedded/paper_figures/embedded/findings.csv\")'"
    flipped = pd.DataFrame([{"Finding": "f", "Source": "ours: this project", "Scope": "all", "Verdict": "holds",
                             "Estimate (points)": None}])
    if reference is not None:
        flipped = pd.read_csv(published)
        flipped.loc[0, "Verdict"] = "contradicted" if flipped.loc[0, "Verdict"] != "contradicted" else "holds"
    flipped.to_csv(tmp_path / "findings.csv", index=False)
    assert not update_readme(ROOT / "README.md", tmp_path / "findings.csv", check=True)


def test_every_pointer_to_a_section_finds_it():
    """A comment or docstring saying docs/PAGE.md "X" (or README "X") names a heading or a bold paragraph lead of that
    page that starts with X."""
    def anchors(page):
        text = (ROOT / page).read_text()
        return [m.group(1) for m in re.finditer(r"^#+ (.+)$", text, re.M)] + \
            [m.group(1) for m in re.finditer(r"^\*\*(.+?)\*\*", text, re.M)]

    files = [ROOT / "config.yaml", ROOT / "Snakefile", *(ROOT / "config").glob("*.yaml"),
             *(ROOT / "workflow").rglob("*.smk"), *(ROOT / "workflow").rglob("*.yaml"), *(ROOT / "spot").rglob("*.py")]
    pointers = [(f.relative_to(ROOT), m.group(1), m.group(2)) for f in files
                for m in re.finditer(r'(README|docs/[\w-]+\.md) "([^"]+)"', re.sub(r"\n\s*#\s*", " ", f.read_text()))]
    assert len(pointers) >= 5
    lost = [(str(f), page, name) for f, page, name in pointers
            if not (ROOT / page.replace("README", "README.md")).is_file()
            or not any(a.startswith(name) for a in anchors(page.replace("README", "README.md")))]
    assert not lost, lost


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The documentation site, built as CI builds it: `mkdocs build --strict` (a warning fails the build)."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_site_has_a_page_per_guide_and_the_api_reference(site):
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = re.findall(r"([\w-]+)\.md", str(nav))
    assert set(pages) == {p.stem for p in (ROOT / "docs").glob("*.md")}  # every page in the nav, none left out
    for page in pages:
        assert (site / f"{page}.html").is_file(), page
    api = (site / "api.html").read_text()
    assert "SPoTViT" in api and "register" in api and "RESULT_KINDS" in api  # rendered from the docstrings


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_every_page_renders_in_a_browser_and_every_link_resolves(site):
    """Each page opened in headless Chromium: no script error, a title, the navigation drawn; every link to another
    page of the site (and its #anchor) resolves to a file and an element of that page."""
    require(Path(CHROMIUM).is_file(), "Chromium", "apt-get install -y --no-install-recommends chromium (.ci/run)")
    from playwright.sync_api import sync_playwright

    broken, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("pageerror", lambda err: errors.append(str(err)))
        for html in sorted(site.glob("*.html")):
            if html.name in ("404.html",):
                continue
            page.goto(html.as_uri())
            assert page.locator("h1").first.inner_text().strip(), html.name
            assert page.locator("nav.md-nav").count() > 0, html.name
            for href in page.eval_on_selector_all("article a[href]", "as => as.map(a => a.getAttribute('href'))"):
                if re.match(r"^[a-z]+:", href):
                    continue  # external (https:, mailto:): not followed offline
                target, _, anchor = href.partition("#")
                file = (html.parent / target).resolve() if target else html
                if not file.is_file() or (anchor and f'id="{anchor}"' not in file.read_text()):
                    broken.append(f"{html.name}: {href}")
        browser.close()
    assert not errors, errors
    assert not broken, broken


def test_every_link_of_the_readme_resolves():
    """The README's links (to the guides in docs/) name files of the repository, as GitHub shows them."""
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    assert len(links) >= 10
    missing = [link for link in links if not re.match(r"^[a-z]+:", link) and not (ROOT / link).is_file()]
    assert not missing, missing
