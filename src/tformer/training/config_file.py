"""A run config's file: the YAML that ``tformer train`` reads, ``key=value`` overrides, and the YAML a run writes.

The sections themselves are typed in :mod:`tformer.training.config`; keys of the old layout are moved by
:mod:`tformer.training.config_migration`.
"""

from __future__ import annotations

import os
from typing import Any

from tformer.config import ConfigError
from tformer.training.config import DEFAULT_TASK, RunConfig
from tformer.training.config_migration import is_moved, migrate_override, migrate_run_config


def read_run_config(path: str | os.PathLike, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML run config, bring keys of the old layout to the new one, apply ``key=value`` overrides
    (dotted keys, YAML values) and check the shared sections.

    The task's own checks (its settings, its model section) come from the task registry:
    ``tformer.tasks.load_run_config`` is this function followed by them.

    Raises:
        ConfigError: missing file, bad YAML, unknown key or bad value, in one line.
    """
    d = _read_yaml(path)
    try:
        d = migrate_run_config(d, task=_final_task(d, overrides))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    apply_overrides(d, overrides)
    try:
        return RunConfig.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: bad UTF-8, a date, an int too long
        raise ConfigError(f"{path} is not valid YAML: {(str(e) or type(e).__name__).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return d


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> None:
    """Set ``key=value`` overrides (dotted keys, YAML values) in the config mapping ``d``, in place.

    Keys of the old layout (``train.nat_iterations=3``) go where they live now, for the task the config
    names once all overrides are in (the rule of :mod:`tformer.training.config_migration`). ``task=NAME``
    carries the section of the task it replaces over to NAME (``task=cmlm`` on a translation recipe keeps
    its ``translation`` settings, as ``cmlm`` settings).
    """
    parsed = [_parse_override(item) for item in overrides]
    for item, key, value in parsed:
        if not is_moved(key):
            _set(d, item, key, value)
    task = _task_name(d)
    for item, key, value in parsed:
        if is_moved(key) and (new := migrate_override(key, task)) is not None:
            _set(d, item, new, value)  # (None: a setting of another task, which never had an effect)


def _parse_override(item: str) -> tuple[str, list[str], Any]:
    import yaml

    key, eq, raw = item.partition("=")
    if not eq or not key:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except (yaml.YAMLError, ValueError, RecursionError):
        raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
    return item, key.split("."), value


def _final_task(d: dict[str, Any], overrides: list[str]) -> str:
    """The task the config names once the overrides are in (a ``task=NAME`` override wins over the file)."""
    names = [_parse_override(item)[2] for item in overrides if item.startswith("task=")]
    return names[-1] if names and isinstance(names[-1], str) else _task_name(d)


def _task_name(d: dict[str, Any]) -> str:
    name = d.get("task", DEFAULT_TASK)
    return name if isinstance(name, str) else ""


def _set(d: dict[str, Any], item: str, parts: list[str], value: Any) -> None:
    if parts == ["task"] and isinstance(value, str):
        old = _task_name(d)
        if old and old != value and isinstance(d.get(old), dict) and isinstance(d.get(value, {}), dict):
            d[value] = {**d.pop(old), **d.get(value, {})}  # the settings follow the task; the new task's win
    node = d
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    node[parts[-1]] = value


def dump_run_config(cfg: RunConfig) -> str:
    """The YAML text of a resolved run config."""
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
