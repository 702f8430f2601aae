"""Frozen, validated configuration dataclasses and their YAML form.

Every knob of the model lives in :class:`TransformerConfig`. Names follow the paper
(d_model, num_heads, d_ff, num_layers, P_drop, eps_ls). Configs are immutable: derive a
changed one with :func:`dataclasses.replace` or :meth:`TransformerConfig.replace`, which
validates again. Unknown keys are rejected everywhere (a misspelled key is an error, never
silently dropped).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from tformer.errors import TformerError

ATTENTION_KINDS = ("full", "chunked", "sliding", "linformer", "lsh")

C = TypeVar("C")


class ConfigError(TformerError):
    """A configuration value or key is invalid. The message is one line meant for users."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class AttentionConfig:
    """How Eq. 1 is computed for long inputs: exact everywhere, or approximate for memory linear in length.

    The algorithms are in :mod:`tformer.nn.long_attention`; this dataclass lives here so that the
    model configs can nest it without importing torch.

    Attributes:
        kind: "full" = Eq. 1 through PyTorch's fused SDPA (the default, the paper's); "chunked" = the same
            result, exact, computed in query x key blocks with a running softmax, so that the Tq x Tk matrix
            is never stored (Rabe & Staats, 2021); "sliding" = each position attends only to the positions
            within ``window`` of it (Longformer's local attention, Beltagy et al., 2020); "linformer" = keys
            and values projected along the sequence to ``linformer_k`` rows (Wang et al., 2020; not causal,
            self-attention only); "lsh" = shared-QK attention within locality-sensitive-hash buckets
            (Reformer, Kitaev et al., 2020; not causal).
        chunk_size: chunked: rows of one query block and one key block.
        window: sliding: how far a position sees, each side (|i - j| <= window), or back when causal
            (0 <= i - j <= window).
        linformer_k: linformer: k, the projected length of keys and values (Linformer §4).
        lsh_bucket_size: lsh: the chunk length after sorting by bucket; about T / bucket_size buckets are drawn.
        lsh_rounds: lsh: hash rounds, combined with their log-sum-exp weights (Reformer §2, multi-round).
        lsh_seed: lsh: the seed of the random rotations in evaluation (training draws fresh ones each call).
    """

    kind: str = "full"
    chunk_size: int = 512
    window: int = 256
    linformer_k: int = 256
    lsh_bucket_size: int = 64
    lsh_rounds: int = 4
    lsh_seed: int = 0

    def __post_init__(self) -> None:
        check(self.kind in ATTENTION_KINDS, f"attention kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")
        for name in ("chunk_size", "window", "linformer_k", "lsh_bucket_size", "lsh_rounds"):
            check(getattr(self, name) >= 1, f"attention {name} must be >= 1, got {getattr(self, name)}")
        check(0 <= self.lsh_seed < 2**63, f"attention lsh_seed must be in [0, 2**63), got {self.lsh_seed}")


def check_attention(cfg: Any, *, causal: bool, relative: bool = False, kinds: tuple[str, ...] = ATTENTION_KINDS
                     ) -> None:
    """Validate a model config's ``attention`` field (a mapping becomes an :class:`AttentionConfig`).

    Args:
        causal: the model's only self-attention is causal (a decoder-only model), which linformer and lsh
            cannot do.
        relative: the model adds a relative position bias to the scores, which needs full or chunked attention.
        kinds: the kinds this model supports.
    """
    if isinstance(cfg.attention, dict):
        object.__setattr__(cfg, "attention", from_dict(AttentionConfig, cfg.attention, where="attention"))
    check(isinstance(cfg.attention, AttentionConfig),
           f"attention must be an AttentionConfig or a mapping, got {type(cfg.attention).__name__}")
    kind = cfg.attention.kind
    check(kind in kinds, f"{type(cfg).__name__} supports attention kinds {kinds}, got {kind!r}")
    check(not (causal and kind in ("linformer", "lsh")), f"{kind} attention cannot be causal (use it in encoders)")
    check(not (relative and kind in ("sliding", "linformer", "lsh")), "relative positions need full or chunked "
                                                                        f"attention, got {kind!r}")


def from_dict(cls: type[C], d: Any, where: str = "") -> C:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types in one line.

    Nested dataclass fields are built recursively. ``where`` is the dotted key path of ``d``
    (e.g. "train"), used in error messages.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix}expected a mapping for {cls.__name__}, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k if isinstance(k, str) and k.isprintable() else repr(k) for k in d if k not in known)
    if unknown:
        raise ConfigError(
            f"{prefix}unknown key(s) for {cls.__name__}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    required = [n for n, f in known.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in d]
    if missing:
        raise ConfigError(f"{prefix}missing required key(s) for {cls.__name__}: {', '.join(missing)}")
    kwargs: dict[str, Any] = {}
    hints = _resolved_types(cls)
    for name, value in d.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            kwargs[name] = value if isinstance(value, tp) else from_dict(tp, value, where=key)
        else:
            kwargs[name] = _coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None


def _resolved_types(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against a simple annotation (int, float, str, bool, X | None, tuple)."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (inner, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond float's range
                number = math.inf
        elif isinstance(value, str):  # YAML 1.1 reads 1e-9 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(number):  # NaN passes no comparison and slips past range checks
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


