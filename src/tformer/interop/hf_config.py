"""What every Hugging Face mapping does with a ``transformers`` config: read its fields under our names.

A family's ``config_from_*`` names, in one table, which of its config's attributes holds each of our fields
(``{"d_model": "hidden_size", "num_heads": "num_attention_heads", ...}``), reads them with :func:`read_fields`,
and translates its activation with :func:`activation`. What is left in the family's function is what needs a
decision (shared embeddings, square image sizes, fixed choices such as post-norm).

``transformers`` is never imported here: a config is read by attribute.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tformer.config import ConfigError

__all__ = ["activation", "read_fields"]


def read_fields(hf_config: Any, names: Mapping[str, str], *, floats: Iterable[str] = ()) -> dict[str, Any]:
    """Our config's fields, read from a Hugging Face config.

    Args:
        hf_config: A ``transformers`` config (any object with the attributes named).
        names: ``{our field: the config's attribute}``.
        floats: Those of our fields stored as ``float`` (a config may hold a probability as the int 0).

    Returns:
        ``{our field: value}``, to pass as keyword arguments to our config class.
    """
    floats = set(floats)
    fields = {ours: getattr(hf_config, theirs) for ours, theirs in names.items()}
    return {name: float(value) if name in floats else value for name, value in fields.items()}


def activation(hf_name: str, supported: Mapping[str, str], family: str) -> str:
    """Our name of a Hugging Face activation (e.g. ``"gelu_new"`` -> ``"gelu_tanh"``, ``"swish"`` -> ``"silu"``).

    Args:
        hf_name: The activation as the config names it.
        supported: ``{Hugging Face's name: ours}`` for the activations the family's mapping supports.
        family: The family's name, for the message (``"Marian"``, ``"ViT"``).

    Raises:
        ConfigError: If ``hf_name`` is not supported; the message lists what is.
    """
    if hf_name not in supported:
        raise ConfigError(f"unsupported {family} activation {hf_name!r} (supported: {sorted(supported)})")
    return supported[hf_name]
