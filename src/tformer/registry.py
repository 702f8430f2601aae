"""One registry class for every choice made by name: attention algorithms, positional schemes, norms, tasks.

A choice among algorithms is a lookup in a :class:`Registry`, never an if-chain over a name spread over files
(DESIGN §3.6). Each registry knows what it names (``"attention kind"``, ``"task"``), so an unknown name fails in
one line that lists the known ones, in the same words everywhere.

    >>> NORMS = Registry("norm_type")
    >>> NORMS.add("layer", make_layer_norm)
    >>> NORMS.lookup("rms")
    ConfigError: norm_type must be one of ('layer',), got 'rms'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from tformer.errors import ConfigError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """A mapping from a name to an entry (a class or a builder) that refuses a name twice and a name it lacks.

    Args:
        what: the config key the names are values of, as error messages call it (e.g. "attention kind").
    """

    def __init__(self, what: str, entries: dict[str, T] | None = None) -> None:
        super().__init__(entries or {})
        self.what = what

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name`` and return it; a name registered twice is a ``ValueError``."""
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered twice ({self[name]!r}, {entry!r})")
        self[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator(name)``: register the decorated class or function under ``name``."""
        return lambda entry: self.add(name, entry)

    def lookup(self, name: str) -> T:
        """The entry of ``name``.

        Raises:
            ConfigError: an unknown name, in one line naming the known ones.
        """
        if name not in self:
            raise ConfigError(f"{self.what} must be one of {tuple(self)}, got {name!r}")
        return self[name]

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (tests register into a copy)."""
        return Registry(self.what, dict(self))
