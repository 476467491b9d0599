import sys
import time
import types

import numpy as np
import pytest
import torch
from helpers import write_block_fmnist

from spot.experiments import saliency
from spot.data.evaluation import EvalData
from spot.data.fmnist import CanvasConfig, build_canvas_dataset
from spot.weights.backbones import MissingWeightsError
from spot.experiments.saliency import SOURCES, SaliencySettings, raw_images, saliency_maps, spectral_residual

MEAN, STD = (0.108,), (0.240,)


@pytest.fixture(scope="module")
def canvas_root(tmp_path_factory):
    """A tiny canvas benchmark from fake Fashion-MNIST IDX files (articles: bright 12×16 blocks, no clutter)."""
    d = write_block_fmnist(tmp_path_factory.mktemp("fmnist"), (("train", 40), ("t10k", 12)))
    root = tmp_path_factory.mktemp("canvas") / "c"
    build_canvas_dataset(root, CanvasConfig(val_size=10, fragments=0), seed=0, fmnist_dir=d, log=lambda *_: None)
    return root


@pytest.fixture
def data(canvas_root):
    return EvalData.open(canvas_root, "test", mean=MEAN, std=STD)


def _blob_image(noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = 0.3 + noise * torch.randn(1, 1, 48, 48, generator=g)
    img[..., 10:18, 26:34] = 1.0
    blob = torch.zeros(48, 48, dtype=torch.bool)
    blob[10:18, 26:34] = True
    return img, blob


# ------------------------------------------------------------------------------------------------ spectral residual

@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_spectral_residual_is_higher_on_the_blob(noise):
    img, blob = _blob_image(noise)
    s = spectral_residual(img)
    assert s.shape == (1, 48, 48) and s.dtype == torch.float32
    assert s.min() == 0 and s.max() == 1
    assert s[0][blob].mean() > 3 * s[0][~blob].mean()
    peak = divmod(int(s[0].argmax()), 48)
    assert 6 <= peak[0] <= 22 and 22 <= peak[1] <= 38  # at (or right next to) the blob


def test_spectral_residual_shapes_scale_invariance_and_flat_images():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 40, 56, generator=g)
    s = spectral_residual(rgb)
    assert s.shape == (2, 40, 56) and 0 <= s.min() and s.max() <= 1
    assert torch.allclose(spectral_residual(rgb * 3.7), s, atol=1e-5)  # invariant to a positive scaling
    assert torch.equal(spectral_residual(torch.full((1, 1, 32, 32), 0.4)), torch.zeros(1, 32, 32))
    # a wider blur spreads the saliency: more of the map is far from zero
    img, _ = _blob_image()
    assert (spectral_residual(img, sigma=8.0) > 0.1).sum() > (spectral_residual(img, sigma=2.5) > 0.1).sum()


def test_saliency_maps_on_the_canvas_benchmark_use_the_unnormalised_images(data, canvas_root):
    idx = torch.tensor([3, 0, 5])
    raw = raw_images(data, idx)
    assert torch.allclose(raw, data.images[idx] * STD[0] + MEAN[0], atol=1e-6)  # read back exactly from the folder
    s = saliency_maps(data, idx, SaliencySettings("spectral_residual"))
    assert s.shape == (3, 48, 48) and 0 <= s.min() and s.max() <= 1
    assert torch.equal(s, spectral_residual(raw).half().float())  # float16-rounded, cache or not
    masks = saliency_maps(data, idx, SaliencySettings("article_mask"))
    inside = (s * masks).sum((1, 2)) / masks.sum((1, 2))
    outside = (s * (1 - masks)).sum((1, 2)) / (1 - masks).sum((1, 2))
    assert (inside > 2 * outside).all()


def test_denormalisation_from_the_dataset_transform_or_arguments():
    from torchvision.transforms import Compose, Normalize

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(4, 3, 16, 16, generator=g)
    normed = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    class FakeImageNet(torch.utils.data.Dataset):
        transform = Compose([Normalize(mean, std)])

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return normed[i], 0

    fake = types.SimpleNamespace(kind="imagenet", root=None, dataset=FakeImageNet(), images=None, workers=0, extras={})
    assert torch.allclose(raw_images(fake, torch.tensor([2, 1])), raw[[2, 1]], atol=1e-6)
    assert torch.allclose(raw_images(fake, torch.tensor([0]), images=normed[:1]), raw[:1], atol=1e-6)
    bare = types.SimpleNamespace(kind="imagenet", root=None, dataset=None, images=normed, extras={})
    assert torch.allclose(raw_images(bare, torch.tensor([3]), mean=mean, std=std), raw[3:], atol=1e-6)
    with pytest.raises(ValueError, match="mean= and std="):
        raw_images(bare, torch.tensor([3]))


# ---------------------------------------------------------------------------------------------------------- cache

def test_cache_hit_returns_identical_maps_without_recomputing(data, tmp_path, monkeypatch):
    settings = SaliencySettings("spectral_residual", cache_dir=str(tmp_path / "cache"))
    calls = []
    real = saliency.spectral_residual

    def counting(images, **kw):
        calls.append(len(images))
        return real(images, **kw)

    monkeypatch.setattr(saliency, "spectral_residual", counting)
    first = saliency_maps(data, torch.tensor([1, 2, 3]), settings)
    assert calls == [3] and len(list((tmp_path / "cache").rglob("*.npz"))) == 1
    # overlapping request: only the missing image is computed
    second = saliency_maps(data, torch.tensor([3, 4, 1]), settings)
    assert calls == [3, 1]
    assert torch.equal(second[0], first[2]) and torch.equal(second[2], first[0])

    def failing(images, **kw):
        raise AssertionError("recomputed a cached map")

    monkeypatch.setattr(saliency, "spectral_residual", failing)
    again = saliency_maps(data, torch.tensor([1, 2, 3]), settings)
    assert torch.equal(again, first)
    uncached = SaliencySettings("spectral_residual")
    monkeypatch.setattr(saliency, "spectral_residual", real)
    assert torch.equal(saliency_maps(data, torch.tensor([1, 2, 3]), uncached), first)  # same values without a cache


def test_cache_is_keyed_by_settings_and_survives_a_damaged_file(data, tmp_path):
    cache = str(tmp_path / "cache")
    a = saliency_maps(data, torch.tensor([0, 1]), SaliencySettings("spectral_residual", cache_dir=cache))
    b = saliency_maps(data, torch.tensor([0, 1]), SaliencySettings("spectral_residual", cache_dir=cache,
                                                                   spectral_residual={"sigma": 8.0}))
    assert not torch.equal(a, b) and len(list((tmp_path / "cache").iterdir())) == 2
    for f in (tmp_path / "cache").rglob("*.npz"):
        f.write_bytes(b"garbage")
    assert torch.equal(saliency_maps(data, torch.tensor([0, 1]),
                                     SaliencySettings("spectral_residual", cache_dir=cache)), a)
    assert not list((tmp_path / "cache").rglob("*.tmp*"))


# ---------------------------------------------------------------------------------------------------------- clipseg

def test_clipseg_without_transformers_says_how_to_install(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    saliency._CLIPSEG_MODELS.clear()
    with pytest.raises(ImportError, match="pip install transformers"):
        saliency_maps(data, torch.tensor([0]), SaliencySettings("clipseg"))


def _fake_transformers(monkeypatch, *, available: bool):
    loads = []

    class Processor:
        @classmethod
        def from_pretrained(cls, source, local_files_only=False):
            loads.append((source, local_files_only))
            if not available:
                raise OSError("We couldn't connect to the hub and the files are not in the cache")
            return cls()

        def __call__(self, text, images, padding, return_tensors):
            assert len(text) == len(images) and images[0].dtype == np.uint8 and images[0].shape[-1] == 3
            return {"pixel_values": torch.from_numpy(np.stack(images)).float().mean(-1)}

    class Model:
        @classmethod
        def from_pretrained(cls, source, local_files_only=False):
            return cls()

        def eval(self):
            return self

        def to(self, device):
            return self

        def __call__(self, pixel_values):
            logits = torch.nn.functional.interpolate(pixel_values[:, None] / 255 * 8 - 4, size=(352, 352))[:, 0]
            return types.SimpleNamespace(logits=logits.squeeze(0))  # CLIPSeg squeezes a batch of one

    module = types.ModuleType("transformers")
    module.CLIPSegProcessor, module.CLIPSegForImageSegmentation = Processor, Model
    monkeypatch.setitem(sys.modules, "transformers", module)
    saliency._CLIPSEG_MODELS.clear()
    return loads


def test_clipseg_offline_and_not_cached_fails_fast_naming_the_model(data, monkeypatch):
    import huggingface_hub.constants as hf

    try:  # the real loading code when transformers is installed, else a stand-in whose lookup fails like it
        import transformers  # noqa: F401
    except ImportError:
        _fake_transformers(monkeypatch, available=False)
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    settings = SaliencySettings("clipseg", clipseg={"model": "example-org/clipseg-not-cached", "prompt": "x"})
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError, match="example-org/clipseg-not-cached") as err:
        saliency_maps(data, torch.tensor([0]), settings)
    assert time.perf_counter() - start < 5
    assert "HF_HOME" in str(err.value) and "save_pretrained" in str(err.value)


def test_clipseg_maps_are_sigmoid_logits_at_the_image_size(data, monkeypatch):
    loads = _fake_transformers(monkeypatch, available=True)
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    for idx in (torch.tensor([0, 4]), torch.tensor([2])):
        s = saliency_maps(data, idx, SaliencySettings("clipseg", clipseg={"model": "CIDAS/clipseg-rd64-refined",
                                                                          "prompt": "p", "device": "cpu"}))
        assert s.shape == (len(idx), 48, 48) and 0 < s.min() and s.max() < 1
        raw = raw_images(data, idx)[:, 0]
        assert s[raw > 0.5].mean() > 0.6 and s[raw == 0].max() < 0.05  # bright article → high, black → low
        expected = torch.sigmoid(raw * 8 - 4)  # the fake model's logits, before its 352² round trip
        assert torch.corrcoef(torch.stack([s.flatten(), expected.flatten()]))[0, 1] > 0.95
    assert loads == [("CIDAS/clipseg-rd64-refined", True)]  # offline → cache only; loaded once


# ------------------------------------------------------------------------------------------------ article masks

def test_article_mask_covers_the_pasted_article(data):
    idx = torch.arange(data.n)
    masks = saliency_maps(data, idx, SaliencySettings("article_mask"))
    raw = raw_images(data, idx)[:, 0]
    assert masks.shape == (data.n, 48, 48) and 0 <= masks.min() and masks.max() <= 1
    assert torch.allclose(masks.sum((1, 2)), torch.full((data.n,), 12.0 * 16), rtol=1e-4)
    assert (raw <= masks + 1.5 / 255).all()  # all of the article's intensity lies inside the footprint
    assert (raw[masks > 0.999] > 0).all()


def test_settings_validation_names_the_accepted_values():
    assert set(SOURCES) == {"article_mask", "spectral_residual", "clipseg"}
    with pytest.raises(ValueError, match="accepted: article_mask, spectral_residual, clipseg"):
        SaliencySettings("itti").validate()
    with pytest.raises(ValueError, match="unknown key"):
        SaliencySettings("clipseg", clipseg={"model": "m", "promt": "x"}).validate()
    with pytest.raises(ValueError, match="unknown key"):
        SaliencySettings("spectral_residual", spectral_residual={"sigma_px": 3}).validate()
    from spot.train.recipes import settings_from_dict

    s = settings_from_dict(SaliencySettings, {"source": "spectral_residual", "cache_dir": None,
                                              "spectral_residual": {"sigma": 8}}, "saliency")
    assert s.validate().parameters()["sigma"] == 8 and s.parameters()["size"] == 64
