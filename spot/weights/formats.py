"""Weight files and their key layouts: reading a state dict, and converting between layouts.

* :func:`read_state_dict` — the tensors of a ``.safetensors`` or ``.pth`` file (never arbitrary unpickling).
* The authors' release (``spot_1k_b16.pth`` …) → timm: :func:`release_config` reads the architecture off the keys and
  shapes, :func:`convert_release_state_dict` maps the keys (``load_official`` in :mod:`spot.weights.official` uses both).
* The MAE repository's layout (``mae_pretrain_vit_base_full.pth``: timm ViT names for the encoder, ``mask_token`` and
  ``decoder_*`` for the decoder) ↔ :class:`~spot.core.mae.SubpixelMAE`: :func:`mae_state_dict`,
  :func:`encoder_state_dict`, :func:`load_mae_state_dict`.
"""
from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import torch

from ..core.embedding import KernelizedPositionalEmbedding
from ..core.positions import grid_positions
from safetensors.torch import load_file

__all__ = ["MissingWeightsError", "read_state_dict", "IGNORED_KEYS", "release_config", "convert_release_state_dict",
           "read_release_state_dict", "mae_state_dict", "encoder_state_dict", "load_mae_state_dict"]


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are neither in a given file nor reachable (hub offline and not cached)."""


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a weight file: ``.safetensors``, or a ``.pth``/``.pt`` read with ``torch.load(weights_only=True)``
    (no arbitrary unpickling), unwrapped from ``"model"``/``"state_dict"``/``"model_ema"`` when nested there.

    A missing file is a ``MissingWeightsError``; an unreadable one or one without a dict of tensors a ``ValueError``
    — whose message is ours: torch's advice to retry with unsafe loading is never passed on (nor chained).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"checkpoint file {str(path)!r} does not exist; check the path")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(_unpickling_refused(path, err)) from None
    except Exception as err:  # noqa: BLE001 — any decoding failure means a bad file
        raise ValueError(f"{str(path)!r} is not a readable checkpoint ({_reason(err)}); download it again") \
            from (None if "weights_only" in str(err) else err)
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} holds no state dict of tensors")
    return state


def _unpickling_refused(path: Path, err: Exception) -> str:
    """Why a ``.pth`` was refused by the tensors-only reader: the Python object it holds, or not a checkpoint."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if found:
        return (f"{str(path)!r} holds non-tensor objects ({found.group(1)}) and will not be loaded: only tensors "
                f"and plain values are read from a .pth; save its state dict alone (or as .safetensors) where it "
                f"was made, or download the weights again")
    return f"{str(path)!r} is not a readable checkpoint (not a state dict of tensors); download it again"


def _reason(err: Exception) -> str:
    """The first line of a decoding error, unless it is advice about unsafe loading (never relayed)."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return type(err).__name__ if "weights_only" in line else line


# ------------------------------------------------------------------------------------------------ the authors' release

IGNORED_KEYS = ("tokenizer.logprior",)
# release block key suffix → timm block key suffix
_BLOCK_KEYS = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias", "ls1.lambda_": "ls1.gamma", "ls2.lambda_": "ls2.gamma",
    "att.qkv.weight": "attn.qkv.weight", "att.qkv.bias": "attn.qkv.bias",
    "att.proj.weight": "attn.proj.weight", "att.proj.bias": "attn.proj.bias",
    "mlp.L1.weight": "mlp.fc1.weight", "mlp.L1.bias": "mlp.fc1.bias",
    "mlp.L2.weight": "mlp.fc2.weight", "mlp.L2.bias": "mlp.fc2.bias",
}
_TOKENIZER_KEYS = ("tokenizer._n_sigma", "embedder.cls_token", "embedder.emb.weight", "embedder.emb.bias")


def _expected_keys(depth: int, mae: bool) -> list[str]:
    keys = list(_TOKENIZER_KEYS)
    keys += [f"blocks.{i}.{k}" for i in range(depth) for k in _BLOCK_KEYS]
    keys += ["fc_norm.weight", "fc_norm.bias"] if mae else ["norm.weight", "norm.bias"]
    return keys + ["head.weight", "head.bias"]


def read_release_state_dict(path) -> dict:
    """The tensors of a release checkpoint, without the entries the release stores but never uses."""
    return {k: v for k, v in read_state_dict(path).items() if k not in IGNORED_KEYS}


def release_config(state: dict, num_heads: int | None = None) -> dict:
    """Architecture read off the release's keys and shapes; ValueError listing missing/unexpected keys."""
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    mae = "fc_norm.weight" in state or "fc_norm.bias" in state
    expected = _expected_keys(depth, mae)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in set(expected)]
    if missing or unexpected:
        raise ValueError(f"not a SPoT release checkpoint (ViT, {depth} blocks, {'MAE' if mae else 'CLS'} head): "
                         f"missing keys {missing}, unexpected keys {unexpected}")
    D, n_in = state["embedder.emb.weight"].shape
    k = math.isqrt(n_in // 4)
    if 4 * k * k != n_in:
        raise ValueError(f"embedder.emb.weight has {n_in} inputs, not 4·k·k (3 colour + 1 position channel)")
    heads = num_heads if num_heads is not None else max(1, D // 64)
    if D % heads:
        raise ValueError(f"width {D} is not divisible by num_heads={heads}; pass num_heads=")
    return dict(depth=depth, mae=mae, embed_dim=D, window=k, num_heads=heads,
                mlp_ratio=state["blocks.0.mlp.L1.weight"].shape[0] / D if depth else 4.0,
                num_classes=state["head.weight"].shape[0])


def convert_release_state_dict(state: dict, window: int) -> tuple[dict, dict]:
    """Release keys → (timm ``VisionTransformer`` state dict, ``ReleaseHeatmapEmbedding`` state dict)."""
    emb_w = state["embedder.emb.weight"]
    D, k2 = emb_w.shape[0], window * window
    vit = {
        "cls_token": state["embedder.cls_token"],
        "patch_embed.proj.weight": emb_w[:, :3 * k2].reshape(D, 3, window, window),
        "patch_embed.proj.bias": state["embedder.emb.bias"],
        "head.weight": state["head.weight"], "head.bias": state["head.bias"],
    }
    for key, value in state.items():
        if m := re.match(r"blocks\.(\d+)\.(.+)$", key):
            vit[f"blocks.{m.group(1)}.{_BLOCK_KEYS[m.group(2)]}"] = value
        elif key.startswith(("norm.", "fc_norm.")):
            vit[key] = value
    pe = {"weight": emb_w[:, 3 * k2:].t(), "raw_n_sigma": state["tokenizer._n_sigma"].reshape(1)}
    return vit, pe


# ------------------------------------------------------------------------------------------------ MAE layout

# classification-head entries of a timm ViT: not part of MAE pre-training, so the MAE file has none of them
_HEAD_PREFIXES = ("head.", "fc_norm.", "attn_pool.")
# fixed (not learned) in MAE: accepted when loading and ignored (the decoder evaluates it from the positions)
_FIXED_KEYS = ("decoder_pos_embed",)


def _check_mae_layout(mae) -> None:
    enc = mae.encoder
    if enc.window != enc.patch_size:
        raise ValueError(f"the MAE/timm layout has no window projection of size {enc.window} for patch "
                         f"{enc.patch_size}; use state_dict()/load_state_dict() instead")
    if enc.pos_embed is not None and not isinstance(enc.pos_embed, KernelizedPositionalEmbedding):
        raise ValueError(f"the MAE/timm layout needs a KernelizedPositionalEmbedding (a grid pos_embed), got "
                         f"{type(enc.pos_embed).__name__}; use state_dict()/load_state_dict() instead")

def _named_tensors(mae, encoder_only: bool) -> dict[str, torch.Tensor]:
    """Live parameters/buffers under timm ViT (encoder) and MAE (decoder) names; ``pos_embed`` excluded."""
    enc = mae.encoder
    out = {name: t for name, t in (("cls_token", enc.cls_token), ("reg_token", enc.reg_token)) if t is not None}
    modules = [("patch_embed.proj", enc.window_embed.proj), ("patch_embed.norm", enc.window_embed.norm),
               ("norm_pre", enc.norm_pre), ("blocks", enc.blocks), ("norm", enc.norm), ("fc_norm", enc.fc_norm),
               ("attn_pool", enc.attn_pool), ("head", enc.head)]
    if not encoder_only:
        if mae.encoder_norm is not None:
            modules.append(("norm", mae.encoder_norm))
        modules += [("decoder_embed", mae.decoder_embed), ("decoder_blocks", mae.decoder_blocks),
                    ("decoder_norm", mae.decoder_norm), ("decoder_pred", mae.decoder_pred)]
        out["mask_token"] = mae.mask_token
    for prefix, module in modules:
        if module is not None:
            out.update({f"{prefix}.{k}": t for k, t in module.state_dict(keep_vars=True).items()})
    return out

@torch.no_grad()
def _timm_pos_embed(mae) -> torch.Tensor | None:
    """timm's ``pos_embed`` (1, [prefix +] N, D): the kernelized PE at its lattice (= the ViT's patch grid).

    Lossless: the lattice kernel matrix is invertible, so re-fitting from these values (as loading does) gives
    back the same lattice weights up to rounding.
    """
    enc = mae.encoder
    if enc.pos_embed is None:
        return None
    pe = enc.pos_embed
    lattice = grid_positions(pe.lattice_size, 1, device=pe.weight.device)
    rows = (pe.kernel(lattice) @ pe.weight.to(torch.float64)).to(pe.weight.dtype)
    if enc.prefix_pos_embed is not None:
        rows = torch.cat([enc.prefix_pos_embed[0], rows], dim=0)
    return rows[None]

def _mae_layout(mae, encoder_only: bool) -> dict[str, torch.Tensor]:
    _check_mae_layout(mae)
    state = {k: t.detach().clone() for k, t in _named_tensors(mae, encoder_only).items()}
    pos_embed = _timm_pos_embed(mae)
    if pos_embed is not None:
        state["pos_embed"] = pos_embed
    return state

def encoder_state_dict(mae) -> dict[str, torch.Tensor]:
    """The encoder under timm ViT names (``vit.load_state_dict`` of the same architecture takes it as is).

    ``pos_embed`` is the current kernelized PE at the patch-grid centres (plus the prefix rows), so a retrofitted
    or MAE-trained PE is exported too; a ViT loading it computes the same grid features. Needs window = patch.
    """
    return _mae_layout(mae, encoder_only=True)

def mae_state_dict(mae) -> dict[str, torch.Tensor]:
    """Encoder (timm names, :func:`encoder_state_dict`) + decoder under the MAE repo's names.

    Decoder keys: ``mask_token``, ``decoder_embed.*``, ``decoder_blocks.i.*``, ``decoder_norm.*``,
    ``decoder_pred.*`` (no ``decoder_pos_embed``: it is fixed). For everything this class holds (including a PE
    that no longer is a sum of lattice vectors) ``state_dict()`` is the complete record.
    """
    return _mae_layout(mae, encoder_only=False)

@torch.no_grad()
def load_mae_state_dict(mae, state: dict[str, torch.Tensor]):
    """Load weights in :func:`mae_state_dict`'s layout, e.g. the official ``mae_pretrain_vit_base_full.pth``.

    Read the file with :func:`spot.weights.backbones.read_state_dict` (it unwraps the official file's ``"model"`` entry; a
    dict with a ``"model"`` entry is unwrapped here as well). ``decoder_pos_embed`` is accepted and ignored (fixed
    sin-cos); the classification head (``head.*``, ``fc_norm.*``, ``attn_pool.*``, absent from MAE files) is kept
    as is when missing. ``pos_embed`` sets the prefix-token PE and re-fits the kernelized PE to its grid rows.
    Any other missing or unexpected key, or a shape mismatch, is a ``ValueError`` (nothing is loaded then).
    """
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict of tensors, got {type(state).__name__}")
    _check_mae_layout(mae)
    live = _named_tensors(mae, encoder_only=False)
    expected = {k: tuple(t.shape) for k, t in live.items()}
    pos_embed = _timm_pos_embed(mae)
    if pos_embed is not None:
        expected["pos_embed"] = tuple(pos_embed.shape)
    missing = [k for k in expected if k not in state and not k.startswith(_HEAD_PREFIXES)]
    unexpected = [k for k in state if k not in expected and k not in _FIXED_KEYS]
    wrong = [f"{k}: {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        def show(keys):
            return f"{keys[:8]}{' …' if len(keys) > 8 else ''}"
        raise ValueError(f"the state dict does not match this MAE (encoder {mae.encoder.embed_dim} wide, window "
                         f"{mae.window}, decoder {mae.decoder_embed.out_features} wide, "
                         f"{len(mae.decoder_blocks)} blocks): missing keys {show(missing)}, unexpected keys "
                         f"{show(unexpected)}, wrong shapes {show(wrong)}")
    for k, t in live.items():
        if k in state:
            t.copy_(state[k])
    if pos_embed is not None:
        enc = mae.encoder
        rows = state["pos_embed"][0]
        npt = 0 if enc.prefix_pos_embed is None else enc.prefix_pos_embed.shape[1]
        if enc.prefix_pos_embed is not None:
            enc.prefix_pos_embed.copy_(rows[:npt][None])
        Ly, Lx = enc.pos_embed.lattice_size
        enc.pos_embed.fit_(rows[npt:].reshape(Ly, Lx, -1))
    return mae

