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
import importlib
from dataclasses import dataclass
import json
import math
import types
import typing
from typing import ClassVar
from pathlib import Path

__all__ = ["load_config", "load_configs", "merge_configs", "settings_from_dict", "add_config_arguments",
           "config_layers", "config_from_args", "parse_config_args", "check_finite", "check_schema", "check_sections",
           "SECTION_SETTINGS", "CheckpointSpec"]


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
    """A preset file with its ``extends:`` chain resolved (the file's values over those of what it extends; the
    top-level keys it lists under ``replace:`` are its own alone, not merged into the parent's)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ValueError(f"{path} extends itself (cycle: {' → '.join(str(p) for p in (*_seen, path.resolve()))})")
    config = _read_yaml(path)
    parent = config.pop("extends", None)
    replace = config.pop("replace", [])
    if parent is None:
        if replace:
            raise ValueError(f"{path}: `replace:` needs `extends:` (it names keys of the parent this file replaces)")
        return config
    if not isinstance(parent, str):
        raise ValueError(f"{path}: extends must be the path of another config file, got {parent!r}")
    base = load_config(path.parent / parent, (*_seen, path.resolve()))
    if not isinstance(replace, list) or not all(isinstance(k, str) and k in config for k in replace):
        raise ValueError(f"{path}: replace must list top-level keys this file sets (they replace the parent's "
                         f"instead of merging into them), got {replace!r}")
    return merge_configs({k: v for k, v in base.items() if k not in replace}, config)


def load_configs(paths, overrides: dict | None = None) -> dict:
    """Several config files layered in order (each with its ``extends:`` chain), then ``overrides``."""
    paths = list(paths)
    if not paths:
        raise ValueError("give at least one config file")
    return merge_configs(*(load_config(p) for p in paths), overrides or {})


def add_config_arguments(parser, *, what: str = "the sections this command reads") -> None:
    """``--config FILE`` (repeatable, layered in order) and/or ``--config-json JSON`` (what the workflow passes):
    one of them is required, which the group's title says (argparse has no "at least one of")."""
    parser = parser.add_argument_group("configuration (required: --config, --config-json, or both)")
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


@dataclass(frozen=True)
class CheckpointSpec:
    """Where a backbone's weights come from, as a preset writes it: ``train:RECIPE`` (trained here by that recipe of
    ``recipes:``) or ``fetch:NAME`` (``spot checkpoints fetch NAME``: a key of ``spot.BACKBONES``)."""

    source: str  # train | fetch
    name: str

    SOURCES: ClassVar[tuple] = ("train", "fetch")

    @classmethod
    def parse(cls, text, where: str = "checkpoint") -> "CheckpointSpec":
        source, sep, name = str(text).partition(":")
        if not sep or source not in cls.SOURCES or not name:
            raise ValueError(f"{where} = {text!r} is not valid; accepted: train:RECIPE or fetch:NAME")
        return cls(source, name)

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


def settings_from_dict(cls, values: dict | None, where: str):
    """A settings dataclass from a config mapping: unknown keys are an error naming the accepted ones, nested
    dataclass fields are built recursively, and every value is checked against its field's declared type (an int
    is not a bool, a number is finite; YAML number strings such as ``3e-3`` become floats where the field is a
    float). Errors are one line naming the key, the value and what is accepted: ``WHERE.KEY must be an integer,
    got 'two'``, ``WHERE: unknown key 'x'; accepted: …``."""
    return _build(cls, values or {}, where)


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {_show(values)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names), key=str)
    if unknown:
        raise ValueError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(k) for k in unknown)}; accepted: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, {} if value is None else value, f"{where}.{key}")
        else:
            kwargs[key] = _typed(value, hint, f"{where}.{key}")
    return cls(**kwargs)


_KINDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", list: "a list",
          dict: "a mapping", type(None): "null"}


def _typed(value, hint, where: str):
    """``value`` as the declared type ``hint`` (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``, unions of
    them, ``object`` = anything), or a one-line error naming ``where``, the value and what is accepted."""
    if hint is object or hint is typing.Any:
        return value
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    kinds = [typing.get_origin(a) or a for a in args]  # list[int] → list
    if value is None and type(None) in kinds:
        return None
    if isinstance(value, bool):
        if bool in kinds:
            return value
    elif isinstance(value, (int, float, str)) and float in kinds and not (isinstance(value, int) and int in kinds):
        number = value
        if isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(number, (int, float)) and math.isfinite(number):
            return float(number)
        if number is not None or str not in kinds:
            raise ValueError(f"{where} must be {_accepted(kinds)}, got {_show(value)}")
        return value
    else:
        for kind in kinds:
            if kind in (int, str, list, dict) and isinstance(value, kind):
                return value
    raise ValueError(f"{where} must be {_accepted(kinds)}, got {_show(value)}")


def _accepted(kinds) -> str:
    return " or ".join(dict.fromkeys(_KINDS.get(k, getattr(k, "__name__", str(k))) for k in kinds))


def _show(value, limit: int = 80) -> str:
    """A value as a message shows it: YAML's null, true and false; long values shortened."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ------------------------------------------------------------------------------------------ checking a whole config

def parse_config_args(entries) -> dict:
    """Snakemake's ``--config KEY=VALUE …`` arguments as the workflow reads them: each VALUE is YAML, read as a
    config file reads it — ``evaluation={budgets: [4, 9]}`` gives the integers 4 and 9, ``{root: "a b"}`` a string.
    (Snakemake itself reads nested values with YAML's BaseLoader, as strings.) A VALUE that is not valid YAML stays
    the string it is; an empty VALUE is null."""
    import yaml

    config: dict = {}
    for entry in entries or ():
        key, sep, text = str(entry).partition("=")
        if not sep or not key:
            raise ValueError(f"--config {entry!r}: give KEY=VALUE")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        config = merge_configs(config, {key: value})
    return config


def check_finite(config, where: str = "") -> None:
    """No NaN or infinity anywhere in a config (YAML's ``.nan``, ``.inf``): a one-line error naming the key."""
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{_path([key], where)} = {value} is not valid; accepted: a finite number")
        if isinstance(value, (dict, list)):
            check_finite(value, _path([key], where))


# The sections whose typed settings the spot commands build from the config: section → (spot module, class), each in
# a torch-free module of spot.settings (the commands' modules re-export them). The workflow builds and validates each
# when it builds the DAG (:func:`check_sections`), so a bad value stops the dry run with the command's own message
# instead of a job hours later.
SECTION_SETTINGS = {
    "evaluation": ("settings.evaluation", "EvaluationSettings"),  # spot evaluate, spot oracle, spot pruning
    "oracle": ("settings.oracle", "OracleSettings"),  # spot oracle, spot transfer
    "transfer": ("settings.oracle", "TransferSettings"),  # spot transfer
    "throughput": ("settings.throughput", "ThroughputSettings"),  # spot throughput
    "saliency": ("settings.saliency", "SaliencySettings"),  # every command placing tokens by saliency
    "pruning": ("settings.pruning", "PruningSettings"),  # spot pruning, spot throughput (pruning: true)
    "learned_placement": ("settings.learned", "LearnedPlacementSettings"),  # spot learned_placement
}


def check_sections(config: dict, sections=None, unused=()) -> dict:
    """Build and validate the typed settings of every section of ``config`` that a spot command reads
    (:data:`SECTION_SETTINGS`; ``sections``: only those), as the command does: ``settings_from_dict(Settings,
    config[section], section).validate()``. A section in ``unused`` (no command of this run reads it, e.g. a
    ``pruning:`` whose fine-tunes are all switched off) is only built: its keys and their types are checked, not the
    values against each other. The settings modules (``spot.settings``) are torch-free, so the workflow calls this
    while it builds the DAG. Returns {section: settings}; raises ValueError with a one-line message."""
    out = {}
    for section, (module, name) in SECTION_SETTINGS.items():
        if (sections is not None and section not in sections) or section not in config:
            continue
        settings = settings_from_dict(getattr(importlib.import_module(f"spot.{module}"), name), config.get(section), section)
        out[section] = settings if section in unused else settings.validate()
    return out


def check_schema(config: dict, schema: dict, where: str = "") -> None:
    """``config`` against a JSON schema (draft 2020-12): the first error as one line naming the key, the value and
    what is accepted — ``data.kind = 'mnist' is not valid; accepted: fmnist, imagenet``, ``data: unknown key
    'rot'; accepted: …`` — instead of jsonschema's report, which prints the schema. Needs jsonschema (Snakemake's)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ValueError(schema_message(error, where, schema))


def _path(parts, where: str = "") -> str:
    text = where
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def _accepted_by(schema, root=None) -> str:
    """What a (sub)schema accepts, in words (``root``: the schema its ``$ref: "#/…"`` point into)."""
    if not isinstance(schema, dict):
        return "anything" if schema else "nothing"
    if isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/") and root is not None:
        target = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if "enum" in schema:
        return ", ".join("null" if v is None else str(v) for v in schema["enum"])
    if "const" in schema:
        return str(schema["const"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(dict.fromkeys(_accepted_by(s, root) for s in schema[key]))
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    words = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "null"}
    text = " or ".join(words.get(k, k) for k in kinds) or "a value"
    bounds = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in schema:
            bounds.append(f"{sign} {schema[key]}")
    if bounds:
        text += " " + " and ".join(bounds)
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    if "minItems" in schema:
        text += f" of at least {schema['minItems']} item{'s' if schema['minItems'] != 1 else ''}"
    if "items" in schema and isinstance(schema["items"], dict) and "array" in kinds:
        text += f" of {_accepted_by(schema['items'], root)}"
    return text


def schema_message(error, where: str = "", root=None) -> str:
    """One line for a jsonschema ValidationError: the key, the value and what is accepted."""
    while error.parent is not None and error.parent.validator in ("oneOf", "anyOf") and \
            list(error.parent.absolute_path) == list(error.absolute_path):
        error = error.parent  # a value none of the alternatives accepts: name them all
    schema = error.schema if isinstance(error.schema, dict) else {}
    parts = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = sorted((k for k in error.instance if k not in known), key=str)
        where_ = f"{_path(parts, where)}: unknown key" if _path(parts, where) else "unknown top-level key"
        return f"{where_} {extra[0]!r}; accepted: {', '.join(known) or 'no keys'}"
    if error.validator == "required":
        missing = [k for k in schema.get("required", []) if k not in error.instance]
        return f"{_path([*parts, missing[0]], where)}: missing; required: {', '.join(schema['required'])}"
    if "propertyNames" in error.absolute_schema_path:  # a key of a mapping whose keys are names (backbones, …)
        return f"{_path(parts, where) or 'the config'}: the name {error.instance!r} is not valid; accepted: " \
               f"{_accepted_by(schema, root)}"
    return f"{_path(parts, where) or 'the config'} = {_show(error.instance)} is not valid; accepted: " \
           f"{_accepted_by(schema, root)}"
