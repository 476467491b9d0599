"""Configuration files and presets: loading, layering, and typed settings (standard library + PyYAML only).

A preset is a YAML file. ``config/paper.yaml`` is complete — every value of the paper's run — and stands alone; the
other presets are overlays that name what they start from with ``extends:`` (a path relative to their own folder)
and set only what differs: ``config.yaml`` (the embedded default) extends the paper preset, ``config/smoke.yaml``
extends ``config.yaml``. So a key an overlay forgets takes the paper's value, never a CPU shortcut, and the paper
preset cannot silently inherit anything. :func:`load_config` resolves the chain; :func:`load_configs` layers several
files (a site's overlay after a preset) and ``--config`` overrides, in order, merging mappings key by key and
replacing lists — as Snakemake merges config files.

Importable without torch: the workflow reads it while building the DAG.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from pathlib import Path

__all__ = ["load_config", "load_configs", "merge_configs", "settings_from_dict", "add_config_arguments",
           "config_layers", "config_from_args"]


def merge_configs(*configs: dict) -> dict:
    """Later configs override earlier ones key by key (nested mappings merged, lists and values replaced)."""
    out: dict = {}
    for config in configs:
        out = _merge(out, config)
    return out


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found")
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the config must be a mapping")
    return config


def load_config(path, _seen: tuple = ()) -> dict:
    """A preset file with its ``extends:`` chain resolved (the file's values over those of what it extends)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ValueError(f"{path} extends itself (cycle: {' → '.join(str(p) for p in (*_seen, path.resolve()))})")
    config = _read_yaml(path)
    parent = config.pop("extends", None)
    if parent is None:
        return config
    if not isinstance(parent, str):
        raise ValueError(f"{path}: extends must be the path of another config file, got {parent!r}")
    return merge_configs(load_config(path.parent / parent, (*_seen, path.resolve())), config)


def load_configs(paths, overrides: dict | None = None) -> dict:
    """Several config files layered in order (each with its ``extends:`` chain), then ``overrides``."""
    paths = list(paths)
    if not paths:
        raise ValueError("give at least one config file")
    return merge_configs(*(load_config(p) for p in paths), overrides or {})


def add_config_arguments(parser, *, what: str = "the sections this command reads") -> None:
    """``--config FILE`` (repeatable, layered in order) and/or ``--config-json JSON`` (what the workflow passes)."""
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help=f"a preset (YAML) with {what}: config.yaml (embedded), config/paper.yaml, … — its "
                             "`extends:` chain is resolved; repeat to layer an overlay over it")
    parser.add_argument("--config-json", action="append", default=[], metavar="JSON",
                        help="a JSON list of config files and override mappings, layered in order after --config "
                             "(the workflow passes its preset this way; repeat to layer more), e.g. "
                             "'[\"config.yaml\", {\"evaluation\": {\"limit\": 100}}]'")


def config_layers(args) -> list:
    """The ``--config`` files then the ``--config-json`` items: file paths (str) and override mappings (dict)."""
    layers = list(getattr(args, "config", None) or [])
    for text in getattr(args, "config_json", None) or []:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--config-json is not valid JSON ({err}): {text!r}") from None
        if not isinstance(items, list) or not all(isinstance(i, (str, dict)) for i in items):
            raise ValueError(f"--config-json must be a JSON list of file paths and mappings, got {text!r}")
        layers += items
    if not any(isinstance(i, str) for i in layers):
        raise ValueError("give a config file: --config config.yaml (the embedded default), --config "
                         "config/paper.yaml, … (or --config-json '[\"config.yaml\"]')")
    return layers


def config_from_args(args) -> dict:
    """The config that ``--config`` / ``--config-json`` describe (see :func:`add_config_arguments`)."""
    return merge_configs(*(load_config(i) if isinstance(i, str) else i for i in config_layers(args)))


def settings_from_dict(cls, values: dict | None, where: str):
    """A settings dataclass from a config mapping: unknown keys are an error naming the accepted ones, nested
    dataclass fields are built recursively, YAML number strings become floats where the field is a float."""
    return _build(cls, values or {}, where)


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; accepted: {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, hint, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(value, hint, where: str):
    """YAML reads ``3e-3`` as a string; turn such numbers into floats where the field is a float."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    if value is None:
        if type(None) in args:
            return None
        raise ValueError(f"{where} must not be null")
    if float in args and isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    return value
