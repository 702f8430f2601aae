"""The tasks ``tformer train`` knows, by name: a dict that each task's module fills when it is imported.

``tformer/tasks/__init__.py`` imports every task module, so the registry is complete once
``tformer.tasks`` is imported (importing this module imports the package first).
"""

from __future__ import annotations

import dataclasses

from tformer.config import ConfigError
from tformer.registry import Registry
from tformer.tasks.base import Task
from tformer.training.config import RunConfig

TASKS: Registry[type[Task]] = Registry("task")


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` the task named ``cls.name``."""
    return TASKS.add(cls.name, cls)


def get_task(name: str) -> type[Task]:
    """The task class named ``name`` (unknown: one-line ConfigError naming the known ones)."""
    return TASKS.lookup(name)


def check_run_config(cfg: RunConfig) -> RunConfig:
    """Check the task's own parts of ``cfg`` (its settings section, its ``model`` and ``data`` sections) and
    return ``cfg`` with the settings complete (defaults included, as config.yaml records them). Raises a
    one-line ConfigError."""
    task = get_task(cfg.task)
    settings = task.settings_from(cfg)
    if cfg.train.guided_attention.enabled and not task.guides_attention:
        raise ConfigError(f"train.guided_attention applies to encoder-decoder attention: task {cfg.task} does not "
                          "train with it (set its weight to 0)")
    if cfg.data.output_vocab != "all" and not task.restricts_output_vocab:
        raise ConfigError(f"data.output_vocab: {cfg.data.output_vocab} is for task translation: task {cfg.task} "
                          "scores every token (set it to all)")
    task.check_config(cfg)
    return dataclasses.replace(cfg, task_settings=dataclasses.asdict(settings))
