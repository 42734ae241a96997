"""Configuration files: YAML validated by pydantic, with ``--set key=value`` overrides.

Every trainer reads one YAML file into a pydantic model that forbids unknown keys, so a typo fails
before any work, naming the key::

    >>> from pydantic import Field
    >>> class Opt(StrictModel):
    ...     lr: float = 1e-6
    ...     betas: list[float] = Field(default_factory=lambda: [0.9, 0.999])
    >>> class Cfg(StrictModel):
    ...     name: str = "run"
    ...     optim: Opt = Field(default_factory=Opt)
    >>> _ = Cfg.model_rebuild()  # (only needed in a doctest)
    >>> cfg = build_config(Cfg, {"optim": {"lr": 3e-6}}, ["optim.betas=[0.9, 0.95]", "name=x"])
    >>> cfg.optim.lr, cfg.optim.betas, cfg.name
    (3e-06, [0.9, 0.95], 'x')
    >>> build_config(Cfg, {"optim": {"lrr": 1}})
    Traceback (most recent call last):
    ...
    baorl.config.ConfigError: optim.lrr: Extra inputs are not permitted (got 1)

Override values are parsed as YAML (``3e-6``, ``true``, ``[1, 2]``, ``null``); a value that does
not parse stays a string.

A key that was renamed (`RENAMED`: the SFT and RL configs now share one vocabulary, TRL's words) is
refused with its new name, not silently ignored::

    >>> build_config(Cfg, {}, ["train.lr=1e-5"])
    Traceback (most recent call last):
    ...
    baorl.config.ConfigError: train.lr: renamed to train.learning_rate
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["StrictModel", "ConfigError", "check_positive_int", "RENAMED", "parse_overrides", "build_config", "load_config", "save_config"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, assignments are validated, and no number is
    infinite or NaN (``lr=.inf`` is refused)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key (``section.key: why``)."""


def check_positive_int(value: Any, name: str, *, optional: str = "") -> int | None:
    """`value` as an int if it is an integer >= 1 (or None when `optional` says what None means),
    else a ValueError naming `name`: the one check of counts and caps given to library calls.

    >>> check_positive_int(3, "concurrency"), check_positive_int(None, "cap", optional="no cap")
    (3, None)
    >>> check_positive_int(0, "concurrency")
    Traceback (most recent call last):
    ...
    ValueError: concurrency must be an integer >= 1, got 0
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        note = f" (or None: {optional})" if optional else ""
        raise ValueError(f"{name} must be an integer >= 1{note}, got {value!r}")
    return int(value)


#: old config key -> what to write instead (a config or ``--set`` using the old key is refused with this)
RENAMED: dict[str, str] = {
    "train.lr": "train.learning_rate",
    "train.lr_scheduler": "train.lr_scheduler_type",
    "train.scheduler": "train.lr_scheduler_type",
    "train.save_every": "train.save_steps",
    "train.keep_checkpoints": "train.save_total_limit",
    "train.activation_checkpointing": "train.gradient_checkpointing",
    "train.device": "train.use_cpu (cpu: true, cuda: false, auto: null)",
    "train.batch_size": "train.per_device_train_batch_size",
    "train.grad_accum": "train.gradient_accumulation_steps",
    "lora": "model.lora",
}


def _renamed(data: Mapping[str, Any]) -> list[str]:
    """The `RENAMED` keys present in `data`, each as ``old: renamed to new``."""
    found = []
    for old, new in RENAMED.items():
        node: Any = data
        for part in old.split("."):
            node = node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING
        if node is not _MISSING:
            found.append(f"{old}: renamed to {new}")
    return found


_MISSING = object()


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a": {"b": 1}, "c": "x"}``.

    >>> parse_overrides(["bao.c_rep=0.01", "bao.score=mean", "train.seed=3"])
    {'bao': {'c_rep': 0.01, 'score': 'mean'}, 'train': {'seed': 3}}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. bao.c_rep=0.01)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
            node = child
        node[leaf] = _yaml_value(value)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
            merged[k] = _merge(dict(merged[k]), v)
        else:
            merged[k] = v
    return merged


def _explain(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) and err["type"] != "extra_forbidden" else f" (got {got!r})"
        lines.append(f"{loc}: {err['msg']}{shown}")
    return "; ".join(lines)


def build_config(cls: type[M], data: Mapping[str, Any] | None, overrides: Iterable[str] = ()) -> M:
    """Validate `data` with `overrides` applied into `cls`; `ConfigError` names each bad key."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    merged = _merge(dict(data or {}), parse_overrides(overrides))
    renamed = _renamed(merged)
    if renamed:
        raise ConfigError("; ".join(renamed))
    try:
        return cls.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_explain(e)) from None


def load_config(cls: type[M], path: str | os.PathLike, overrides: Iterable[str] = ()) -> M:
    """Read the YAML file at `path` into `cls` (see `build_config`)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason}); save the config as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    try:
        return build_config(cls, data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def save_config(cfg: BaseModel, path: str | os.PathLike) -> None:
    """Write the full, resolved config (defaults included) as YAML."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
