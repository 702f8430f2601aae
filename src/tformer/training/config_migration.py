"""Run configs of the old layout, in which a task's settings sat in the shared ``data`` and ``train`` sections.

Every ``config.yaml`` a run wrote before tasks had sections of their own holds all of these keys, with their
defaults for the tasks the run was not. :data:`MOVED` says where each went. A config of the old layout loads
with the same meaning:

* a key that the config's task read moves into the task's own section (the one named after it), under its
  new name (``train.nat_iterations: 5`` with ``task: cmlm`` -> ``cmlm: {iterations: 5}``);
* a key that the task did not read is dropped: it never had an effect (``train.nat_iterations`` of a
  translation run, ``data.mixup`` of a classifier);
* a key given both ways (``train.bleu_samples`` and ``translation.bleu_samples``) is an error, not a guess.

Overrides on the command line follow the same rule (:func:`migrate_override`). This module is the one place
that knows the old layout; it imports no task (the table holds names only).
"""

from __future__ import annotations

from typing import Any

from tformer.config import ConfigError

OLD_DEFAULT_TASK = "translation"  # a config without a task key
MOVED: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    # (section, old key): (the tasks that read it, its key in the task's section)
    ("data", "labels"): (("classify",), "labels"),
    ("data", "max_shift"): (("vision",), "max_shift"),
    ("data", "mixup"): (("vision",), "mixup"),
    ("train", "bleu_samples"): (("translation", "cmlm"), "bleu_samples"),
    ("train", "bleu_tokenize"): (("translation", "cmlm"), "bleu_tokenize"),
    ("train", "nat_iterations"): (("cmlm",), "iterations"),
    ("train", "nat_length_candidates"): (("cmlm",), "length_candidates"),
}


def is_moved(parts: list[str]) -> bool:
    """Whether the dotted key ``parts`` (``["train", "nat_iterations"]``) is one of the old layout."""
    return tuple(parts) in MOVED


def migrate_override(parts: list[str], task: str) -> list[str] | None:
    """The key that an override of the old layout sets for ``task``: its new place, or None (dropped)."""
    readers, new = MOVED[tuple(parts)]
    return [task, new] if task in readers else None


def migrate_run_config(d: dict[str, Any], task: str | None = None) -> dict[str, Any]:
    """A copy of the config mapping ``d`` in the current layout: every key of :data:`MOVED` moved into the
    section of the config's task (``task``, when a ``task=`` override will replace the file's) or dropped
    (see the module docstring). Anything else is left for the dataclasses to check."""
    if not isinstance(d, dict):
        return d  # RunConfig says what is wrong with it
    d = dict(d)
    task = task or d.get("task", OLD_DEFAULT_TASK)
    for (section, key), (readers, new) in MOVED.items():
        if not isinstance(d.get(section), dict) or key not in d[section]:
            continue
        d[section] = dict(d[section])
        value = d[section].pop(key)
        if task in readers:
            if not isinstance(d.get(task, {}), dict):
                raise ConfigError(f"{task}: expected a mapping of the task's settings, got {d[task]!r}")
            settings = d[task] = dict(d.get(task, {}))
            if new in settings:
                raise ConfigError(f"{section}.{key} is {task}.{new} now: give it once, as {task}.{new}")
            settings[new] = value
    return d
