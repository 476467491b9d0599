"""The ``saliency:`` section (the saliency maps of the Salient and Background priors), typed and validated.

:data:`SOURCES` names the sources :mod:`spot.experiments.saliency` computes; the spectral residual's parameters and their
defaults (Hou & Zhang's reference code) and CLIPSeg's keys are what the section is checked against. Importable
without torch: the workflow validates the section while it builds the DAG.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SaliencySettings", "SOURCES"]

SOURCES = ("article_mask", "spectral_residual", "clipseg")
_SR_DEFAULTS = {"size": 64, "average": 3, "sigma": 2.5, "truncate": 2.0, "floor": 0.01}
_CLIPSEG_KEYS = {"model", "prompt", "batch_size", "device"}


@dataclass
class SaliencySettings:
    source: str = "article_mask"
    clipseg: dict = field(default_factory=lambda: {"model": "CIDAS/clipseg-rd64-refined",
                                                   "prompt": "a photo of the main object"})
    # spectral residual parameters (defaults: Hou & Zhang's reference code; see spectral_residual())
    spectral_residual: dict = field(default_factory=lambda: dict(_SR_DEFAULTS))
    cache_dir: str | None = None

    def validate(self) -> "SaliencySettings":
        if self.source not in SOURCES:
            raise ValueError(f"saliency.source = {self.source!r} is not available; accepted: {', '.join(SOURCES)}")
        unknown = sorted(set(self.clipseg or {}) - _CLIPSEG_KEYS)
        if unknown:
            raise ValueError(f"saliency.clipseg: unknown key(s) {unknown}; accepted: {sorted(_CLIPSEG_KEYS)}")
        if self.source == "clipseg" and not (self.clipseg or {}).get("model"):
            raise ValueError("saliency.clipseg.model must name a hub model id or a local folder")
        sr = self.spectral_residual or {}
        unknown = sorted(set(sr) - set(_SR_DEFAULTS))
        if unknown:
            raise ValueError(f"saliency.spectral_residual: unknown key(s) {unknown}; accepted: {sorted(_SR_DEFAULTS)}")
        p = {**_SR_DEFAULTS, **sr}
        if not (int(p["size"]) >= 8 and int(p["average"]) >= 1 and float(p["sigma"]) >= 0 and float(p["truncate"]) > 0
                and float(p["floor"]) >= 0):
            raise ValueError(f"saliency.spectral_residual needs size ≥ 8, average ≥ 1, sigma ≥ 0, truncate > 0 and "
                             f"floor ≥ 0, got {p}")
        return self

    def parameters(self) -> dict:
        """The settings that determine the maps of the selected source (what the cache key hashes)."""
        if self.source == "spectral_residual":
            return {**_SR_DEFAULTS, **(self.spectral_residual or {})}
        if self.source == "clipseg":
            return {k: v for k, v in (self.clipseg or {}).items() if k in ("model", "prompt")}
        return {}
