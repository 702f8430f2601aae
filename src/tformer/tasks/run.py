"""What ``tformer train`` does, task by task: load and check the run config, then train the registered task.

:func:`load_run_config` is where a user sees every config error, in one line, before any data is read:
the shared sections (:func:`tformer.training.config_file.read_run_config`, which also brings configs of the old
layout to the new one) and then the task's own (:func:`tformer.tasks.registry.check_run_config`).
"""

from __future__ import annotations

import os
from typing import Any

from tformer.config import ConfigError
from tformer.tasks.registry import check_run_config, get_task
from tformer.training.config import RunConfig
from tformer.training.config_file import read_run_config
from tformer.training.config_migration import migrate_run_config
from tformer.training.run import train_run


def load_run_config(path: str | os.PathLike, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML run config, apply ``key=value`` overrides (dotted keys, YAML values) and check it whole,
    the task's parts included.

    Raises:
        ConfigError: missing file, bad YAML, unknown key or bad value, in one line.
    """
    cfg = read_run_config(path, overrides)
    try:
        return check_run_config(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_run_config(d: dict[str, Any]) -> RunConfig:
    """A run config from a mapping (of the current layout or the old one), checked whole."""
    return check_run_config(RunConfig.from_dict(migrate_run_config(d)))


def run_training(cfg: RunConfig, *, resume: bool = False, show_progress: bool | None = None) -> dict[str, Any]:
    """Check ``cfg``, then prepare the run directory and data, build the model and train it
    (:func:`tformer.training.run.train_run`); returns the run's summary (one JSON line for ``tformer train``).

    Under ``torchrun`` every process calls this; rank 0 prepares the data and tokenizer first.
    """
    cfg = check_run_config(cfg)
    return train_run(cfg, get_task(cfg.task).build, resume=resume, show_progress=show_progress)
