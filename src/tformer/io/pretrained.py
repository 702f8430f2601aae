"""Pretrained-model folders: ``config.json`` + ``model.safetensors``, written and read by one implementation.

The folder format (every model family)::

    config.json        {"architecture": "<model class name>", <the config's fields>, [<sections>]}
    model.safetensors  each tensor once: a tied matrix under its first name in the state dict

A *section* is a mapping beside the config's fields that a model class declares for settings of its own
(:class:`tformer.models.bert.EncoderOnlyForClassification`'s ``"classifier"``). Both files are written
atomically. Loading checks every tensor's name and shape and fails with one line (:class:`ConfigError`)
naming the file and the first thing that does not fit.

Folders written by tformer 0.1.0 keep loading: their ``config.json`` is the config alone (no ``architecture``:
the loading class decides, as it did then; :func:`tformer.models.registry.load_pretrained` tells the families
apart by their keys), or, for the encoder-only models, ``{"architecture": ..., "encoder": {...}, ...}``
(:attr:`Pretrained.legacy_section`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from tformer.errors import ConfigError, first_line
from tformer.io.files import atomic_open, read_json, write_json

__all__ = ["ARCHITECTURE_KEY", "CONFIG_NAME", "WEIGHTS_NAME", "Pretrained", "architecture_of", "load_checked",
           "read_json", "read_safetensors", "save_folder", "tensor_names", "unique_state", "write_json"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARCHITECTURE_KEY = "architecture"

M = TypeVar("M", bound="Pretrained")


# ---- the two files -------------------------------------------------------------------------------
def read_safetensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """Every tensor of a safetensors file, on the CPU.

    Raises:
        ConfigError: the file is missing or corrupt, in one line naming it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ConfigError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise ConfigError(f"cannot load {path}: {first_line(e)}") from None


def tensor_names(path: str | os.PathLike) -> list[str]:
    """The names of the tensors in a safetensors file, read from its header alone.

    Raises:
        ConfigError: the file is missing or corrupt, in one line naming it.
    """
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise ConfigError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise ConfigError(f"cannot load {path}: {first_line(e)}") from None


def unique_state(module: nn.Module) -> dict[str, Tensor]:
    """The state dict with each tensor once: a tied matrix under its first name."""
    out, seen = {}, set()
    for name, t in module.state_dict().items():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            out[name] = t
    return out


def load_checked(module: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Copy ``tensors`` into ``module`` after checking that names and shapes match exactly.

    Raises:
        ConfigError: one line naming the first missing, mis-shaped or unexpected tensor.
    """
    expected = unique_state(module)
    for name, t in expected.items():
        if name not in tensors:
            raise ConfigError(f"{source}: no tensor {name}")
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise ConfigError(f"{name}: shape {tuple(tensors[name].shape)} in {source}, {tuple(t.shape)} expected")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ConfigError(f"{source}: unexpected tensor {extra[0]}{more}")
    with torch.no_grad():
        for name, t in expected.items():
            t.copy_(tensors[name])


def save_folder(directory: str | os.PathLike, doc: dict[str, Any], module: nn.Module) -> None:
    """Write ``model.safetensors`` (each tensor of ``module`` once) and then ``config.json`` (``doc``)."""
    from safetensors.torch import save

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.contiguous() for name, t in unique_state(module).items()}
    with atomic_open(d / WEIGHTS_NAME) as f:
        f.write(save(tensors, metadata={"format": "pt"}))  # one key: safetensors orders several at random
    write_json(d / CONFIG_NAME, doc)


def architecture_of(doc: dict[str, Any], path: str | os.PathLike) -> str | None:
    """The model class a ``config.json`` mapping names; None for a folder of tformer 0.1.0, which named none."""
    arch = doc.get(ARCHITECTURE_KEY)
    if arch is not None and not (isinstance(arch, str) and arch.isidentifier()):
        raise ConfigError(f"{path}: architecture must be a model class name, got {arch!r}")
    return arch


def _article(name: str) -> str:
    return f"an {name}" if name[:1] in "AEIOU" else f"a {name}"


def _split(doc: dict[str, Any], field_names: set[str], sections: tuple[str, ...], nested: str | None,
           part: bool) -> tuple[dict[str, Any], str, dict[str, Any], list[str]]:
    """config.json's mapping -> (the config's mapping, its key path, the sections found, unknown top-level keys).

    ``nested``: the key under which tformer 0.1.0 kept the config of this class (None: flat). ``part``: the folder
    holds a larger model, whose own sections (mappings that are no config field) are not this class's business.
    """
    body = {k: v for k, v in doc.items() if k != ARCHITECTURE_KEY}
    if nested is not None and isinstance(body.get(nested), dict):
        config, where = body.pop(nested), nested
        others = set(body)
    else:
        config, where = {k: v for k, v in body.items() if k in field_names}, ""
        others = set(body) - field_names
    found = {k: body[k] for k in sections if k in others}
    unknown = sorted(str(k) for k in others - set(sections) if not (part and isinstance(body[k], dict)))
    return config, where, found, unknown


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` / ``num_parameters`` for an ``nn.Module`` whose whole configuration
    is ``self.cfg`` (an instance of :attr:`config_class`) and, where declared, a few :attr:`sections`.

    A model class sets :attr:`config_class` and, where it needs them, overrides :meth:`config_sections` and
    :meth:`from_config` (a model built from more than its config), :attr:`parts` (folders of larger models it can
    be read from) and :attr:`legacy_section`.
    """

    config_class: ClassVar[type]
    sections: ClassVar[dict[str, type]] = {}  # mappings beside the config's fields in config.json: name -> config
    parts: ClassVar[dict[str, str]] = {}  # architecture -> the prefix of this model's tensors in its folders
    legacy_section: ClassVar[str | None] = None  # tformer 0.1.0 kept the config under this key (encoder-only)
    cfg: Any

    # ---- what is saved -------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Number of distinct parameters (tied matrices counted once)."""
        return sum(p.numel() for p in self.parameters())  # type: ignore[attr-defined]

    def config_sections(self) -> dict[str, dict[str, Any]]:
        """The :attr:`sections` of this model's ``config.json`` (none by default)."""
        return {}

    def config_document(self) -> dict[str, Any]:
        """``config.json``'s mapping: the architecture, the config's fields and the sections. A config's
        ``saved_only_if_set`` fields (added after folders were written) are left out at their defaults, so that
        such a folder is what it was; loading fills them in."""
        return {ARCHITECTURE_KEY: type(self).__name__, **self.cfg.saved_dict(), **self.config_sections()}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` (tied tensors stored once), each atomically."""
        save_folder(directory, self.config_document(), self)  # type: ignore[arg-type]

    # ---- what is loaded ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls: type[M], cfg: Any, sections: dict[str, Any]) -> M:
        """A fresh model for ``cfg`` and the :attr:`sections` (each read into its config class)."""
        return cls(cfg)

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> M:
        """Load a model written by :meth:`save_pretrained` (or by tformer 0.1.0), on ``map_location``.

        Raises:
            ConfigError: a missing, corrupt or mismatched file, or a folder of another model class, in one line.
        """
        d = Path(directory)
        doc = read_json(d / CONFIG_NAME)
        arch = architecture_of(doc, d / CONFIG_NAME) or cls.__name__  # 0.1.0 folders: the loading class decides
        if arch != cls.__name__ and arch not in cls.parts:
            raise ConfigError(f"{d} holds {_article(arch)}, not {_article(cls.__name__)}")
        model = cls._build(doc, d / CONFIG_NAME, part=arch != cls.__name__)
        tensors = read_safetensors(d / WEIGHTS_NAME)
        prefix = "" if arch == cls.__name__ else cls.parts[arch]
        if prefix:
            tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        load_checked(model, tensors, str(d / WEIGHTS_NAME))
        return model.to(map_location)

    @classmethod
    def _build(cls: type[M], doc: dict[str, Any], path: Path, part: bool) -> M:
        """The model that config.json's mapping ``doc`` describes, with fresh weights."""
        names = {f.name for f in dataclasses.fields(cls.config_class)}
        sections = {} if part else cls.sections
        config, where, found, unknown = _split(doc, names, tuple(sections), cls.legacy_section, part)
        missing = [name for name in sections if name not in found]
        try:
            if unknown and where:  # the flat layout leaves them to from_dict, which names the known keys
                raise ConfigError(f"unknown key(s) {', '.join(unknown)}")
            if missing:
                raise ConfigError(f"no {missing[0]} section")
            cfg = cls.config_class.from_dict({**config, **{k: doc[k] for k in unknown}}, where=where)
            read = {name: sections[name].from_dict(found[name], where=name) for name in sections}
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return cls.from_config(cfg, read)
