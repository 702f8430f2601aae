"""``save_pretrained`` / ``from_pretrained`` for a model whose whole configuration is ``self.cfg``.

A folder holds ``config.json`` (``cfg.to_dict()``) and ``model.safetensors`` (each tensor once: a tied
matrix under its first name), both written atomically. Loading checks every name and shape and fails
with one line naming the first tensor that does not fit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from tformer.config import ConfigError
from tformer.io.files import atomic_open, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class Pretrained:
    """Mixin for an ``nn.Module`` built as ``cls(cfg)``; set ``config_class`` to the config's dataclass."""

    config_class: type

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors``, each atomically."""
        from safetensors.torch import save

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors, seen = {}, set()
        for name, t in self.state_dict().items():  # a tied matrix is stored once, under its first name
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                tensors[name] = t.contiguous()
        with atomic_open(d / WEIGHTS_NAME) as f:
            f.write(save(tensors, metadata={"format": "pt"}))
        atomic_write_text(d / CONFIG_NAME, json.dumps(self.cfg.to_dict(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"):
        """Load a model written by :meth:`save_pretrained`.

        Raises:
            ConfigError: a missing, corrupt or mismatched file, in one line naming it.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(directory)
        try:
            doc = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8"))
            cfg = cls.config_class.from_dict(doc)
        except (OSError, ValueError, RecursionError) as e:
            if isinstance(e, ConfigError):
                raise ConfigError(f"{d / CONFIG_NAME}: {e}") from None
            raise ConfigError(f"cannot read {d / CONFIG_NAME}: {getattr(e, 'strerror', None) or e}") from None
        model: nn.Module = cls(cfg)
        try:
            tensors = load_file(str(d / WEIGHTS_NAME), device=str(map_location))
        except (SafetensorError, OSError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"cannot load {d / WEIGHTS_NAME}: {first}") from None
        own = model.state_dict()
        for name, t in tensors.items():
            if name not in own:
                raise ConfigError(f"{d / WEIGHTS_NAME}: unexpected tensor {name} for {cls.__name__}")
            if own[name].shape != t.shape:
                raise ConfigError(f"{d / WEIGHTS_NAME}: {name} has shape {tuple(t.shape)}, "
                                  f"{tuple(own[name].shape)} expected")
        stored = {own[n].data_ptr() for n in tensors}
        missing = [n for n, t in own.items() if n not in tensors and t.data_ptr() not in stored]
        if missing:
            raise ConfigError(f"{d / WEIGHTS_NAME}: no tensor {missing[0]} for {cls.__name__}")
        model.load_state_dict(tensors, strict=False)  # tied copies share the stored tensor's storage
        return model.to(map_location)
